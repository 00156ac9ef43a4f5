package bus

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
)

// A NATS cluster is a few embedded servers (`amphi nats`, one per machine)
// routed to each other, so that amphi processes given all their client URLs
// keep the program flowing when one node dies: each message crosses the
// routes to the nodes with subscribers, and a client whose node is gone
// reconnects to another and resubscribes. Routes carry everything, so a
// node must present the cluster's secret to be routed to; that is what lets
// the route listener take a non-loopback address, which routes between
// machines need.

// routeUser is the user name nodes present to each other's routes, with
// the cluster's secret as its password.
const routeUser = "amphi"

// ClusterConfig makes the embedded server one node of a NATS cluster.
type ClusterConfig struct {
	// Listen is the address the other nodes' routes connect to (host:port;
	// port 0 is a free one). It may be any address: a route must present
	// Secret. Empty means no cluster, and the other fields are ignored.
	Listen string
	// Routes are the other nodes' Listen addresses, as
	// nats-route://host:port. One that is up is enough to join: the
	// cluster tells a node of the rest. Empty means this node waits for the
	// others to route to it.
	Routes []string
	// Name is the cluster's; a node of another is refused. Empty means
	// "amphi".
	Name string
	// Secret is what each node presents to the others' routes; every node
	// of a cluster has the same. It is required: without it anyone who
	// reaches Listen could join and read or forge every program.
	Secret string
	// Node names this server in its cluster, where names must be unique.
	// Empty means the server's own random ID.
	Node string
}

// apply makes opts a node of the cluster c describes.
func (c ClusterConfig) apply(opts *server.Options) error {
	if c.Secret == "" {
		return errors.New("bus: a cluster needs a secret, or anyone who reaches its route address joins it")
	}
	host, port, err := hostPort("cluster", c.Listen)
	if err != nil {
		return err
	}
	opts.ServerName = c.Node
	opts.Cluster = server.ClusterOpts{
		Name:     cmp.Or(c.Name, "amphi"),
		Host:     host,
		Port:     port,
		Username: routeUser,
		Password: c.Secret,
	}
	for _, raw := range c.Routes {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || u.Host == "" {
			return fmt.Errorf("bus: route %q: want nats-route://host:port", raw)
		}
		u.User = url.UserPassword(routeUser, c.Secret)
		opts.Routes = append(opts.Routes, u)
	}
	return nil
}

// ClusterURL returns the address the other nodes of the embedded server's
// cluster route to, as nats-route://host:port, without the secret; empty
// without a cluster.
func (b *Bus) ClusterURL() string {
	if b.srv == nil {
		return ""
	}
	addr := b.srv.ClusterAddr()
	if addr == nil {
		return ""
	}
	return "nats-route://" + net.JoinHostPort(addr.IP.String(), strconv.Itoa(addr.Port))
}

// Peers returns how many other nodes of its cluster the embedded server is
// routed to: 0 without a cluster.
func (b *Bus) Peers() int {
	if b.srv == nil {
		return 0
	}
	return b.srv.NumRemotes()
}
