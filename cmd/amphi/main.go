// Command amphi is live audio rooms in one binary: `amphi serve` runs the
// server; create, start, end, speak and listen are clients of the same HTTP,
// WHIP and Ogg protocols everyone else uses.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

const usage = `amphi: live audio rooms

Usage:
  amphi serve  [--addr 127.0.0.1:8080] [--data ./amphi-data] [--nats URL]
  amphi create --server URL --title T [--description D] [--at RFC3339] [--email E [--password-file F]]
  amphi start  --server URL --space ID --token HOST_TOKEN
  amphi end    --server URL --space ID --token HOST_TOKEN
  amphi speak  --server URL --space ID --token T FILE [--loop]
  amphi listen --server URL --space ID [--out FILE] [--for DURATION]
  amphi load   --server URL [--space ID] --listeners N --duration D [--rate R] [--json FILE] [--chart FILE.html] [--pid PID]
               [--nats URL --workers K]      (split over remote workers)
  amphi load   --worker --nats URL           (a remote worker)
  amphi nats   [--listen ADDR] [--cluster ADDR] [--routes URLs] [--name N] [--token-file F] [--cluster-secret-file F]
               (one node of a NATS cluster; scripts/nats-cluster.sh starts three)
  amphi admin create --data DIR --email E [--password-file F]   (password on stdin otherwise)

Run "amphi COMMAND -h" for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "amphi:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return flag.ErrHelp
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "serve":
		return runServe(ctx, args)
	case "create":
		return runCreate(ctx, args, os.Stdout)
	case "start", "end":
		return runLifecycle(ctx, cmd, args, os.Stdout)
	case "speak":
		return runSpeak(ctx, args, os.Stdout)
	case "listen":
		return runListen(ctx, args, os.Stdout)
	case "load":
		return runLoad(ctx, args, os.Stdout)
	case "nats":
		return runNATS(ctx, args, os.Stdout)
	case "admin":
		return runAdmin(ctx, args, os.Stdin, os.Stdout)
	case "help", "-h", "--help":
		fmt.Fprint(os.Stdout, usage)
		return nil
	default:
		fmt.Fprint(os.Stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// runServe runs the server until a signal, then shuts it down gracefully:
// live spaces end cleanly and their recordings are finalised.
func runServe(ctx context.Context, args []string) error {
	m := NewMain()
	if err := m.ParseFlags(ctx, args); err != nil {
		return err
	}
	if m.Config.Procs > 1 {
		return supervise(ctx, m.Config.Procs, withoutFlag(args, "procs"), m.Config.OpsAddr, os.Stdout)
	}
	if err := m.Run(ctx); err != nil {
		m.Close()
		if errors.Is(err, errStoodDown) {
			return nil
		}
		return err
	}
	ops := m.OpsURL()
	if ops == "" {
		ops = "no address"
	}
	fmt.Fprintf(os.Stdout, "amphi serving on %s (data in %s, %s, /ops and /metrics on %s)\n", m.URL(), m.Config.DataDir, m.busSummary(), ops)
	<-ctx.Done()
	fmt.Fprintln(os.Stdout, "amphi: shutting down")
	return m.Close()
}
