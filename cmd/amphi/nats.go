package main

import (
	"cmp"
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/amphi-audio/amphi/internal/bus"
)

// peersEvery is how often `amphi nats` looks whether its routes changed,
// to say so: a person rehearsing a node's death sees it within a second.
const peersEvery = time.Second

// runNATS runs one node of a NATS cluster, amphi's embedded server routed
// to the others, until ctx is done. amphi processes join the cluster with
// `--nats URL1,URL2,URL3`, the nodes' client URLs with the token.
func runNATS(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("amphi nats", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:4222", "client address; any address is allowed, clients present the token")
	cluster := fs.String("cluster", "127.0.0.1:6222", "route address the other nodes connect to; any address is allowed, routes present the cluster secret")
	routes := fs.String("routes", "", "comma-separated nats-route://host:port of the other nodes' --cluster addresses")
	name := fs.String("name", "", "this node's name, unique in the cluster (default a random one)")
	tokenFile := fs.String("token-file", "nats.token", "file holding the clients' token, the same on every node; created 0600 if missing")
	secretFile := fs.String("cluster-secret-file", "nats-cluster.secret", "file holding the routes' secret, the same on every node; created 0600 if missing")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	token, err := loadKey(*tokenFile)
	if err != nil {
		return fmt.Errorf("nats: token: %w", err)
	}
	secret, err := loadKey(*secretFile)
	if err != nil {
		return fmt.Errorf("nats: cluster secret: %w", err)
	}
	cfg := bus.DefaultConfig()
	cfg.Listen, cfg.Token = *listen, hex.EncodeToString(token)
	cfg.Cluster = bus.ClusterConfig{Listen: *cluster, Secret: hex.EncodeToString(secret), Node: *name}
	if *routes != "" {
		cfg.Cluster.Routes = strings.Split(*routes, ",")
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b, err := bus.Open(ctx, cfg)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	defer b.Close()
	say := "amphi nats " + cmp.Or(*name, "node") + ":"
	fmt.Fprintf(stdout, "%s clients on %s (token in %s), routes on %s\n", say, b.RedactedURL(), *tokenFile, b.ClusterURL())

	tick := time.NewTicker(peersEvery)
	defer tick.Stop()
	peers := 0
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(stdout, say, "shutting down")
			return nil
		case <-tick.C:
		}
		if n := b.Peers(); n != peers {
			peers = n
			fmt.Fprintf(stdout, "%s routed to %d other node(s)\n", say, n)
		}
	}
}
