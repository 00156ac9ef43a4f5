package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// One process holds at most the open-files limit (20 000 on every machine
// here) of listeners, so a machine's audience is a matter of processes:
// `amphi serve --role edge --procs N` runs N edge processes on one port
// (SO_REUSEPORT), each with its own ops address (the given port plus its
// index), and restarts any that dies. The kernel gives a dead process's
// share of new connections to the others; amphi's own clients resume
// where they were (from_seq), so listeners do not notice.

// procRestartWait is how long a dead edge process waits to be restarted:
// soon, but not in a tight loop when it dies at start.
const procRestartWait = time.Second

// supervise runs n copies of `amphi serve args... --reuse-port` until ctx is
// done, then stops them with SIGTERM and waits. Each copy gets the ops
// address opsAddr with its port plus the copy's index (or none if opsAddr is
// empty). It writes what happens to out.
func supervise(ctx context.Context, n int, args []string, opsAddr string, out io.Writer) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("serve: --procs: %w", err)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		procArgs := append([]string{"serve"}, args...)
		procArgs = append(procArgs, "--reuse-port")
		addr, err := nthAddr(opsAddr, i)
		if err != nil {
			return err
		}
		procArgs = append(procArgs, "--ops-addr", addr)
		wg.Go(func() { errs[i] = runProc(ctx, i, self, procArgs, out) })
	}
	fmt.Fprintf(out, "amphi: %d edge processes started\n", n)
	wg.Wait()
	return errors.Join(errs...)
}

// nthAddr is addr with its port plus i; "" stays "".
func nthAddr(addr string, i int) (string, error) {
	if addr == "" {
		return "", nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("serve: --ops-addr %q: %w", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return "", fmt.Errorf("serve: --ops-addr %q: %w", addr, err)
	}
	if p == 0 {
		return addr, nil
	}
	return net.JoinHostPort(host, strconv.Itoa(p+i)), nil
}

// runProc runs one edge process, restarting it whenever it dies, until ctx
// is done; then it stops it gracefully.
func runProc(ctx context.Context, i int, self string, args []string, out io.Writer) error {
	for {
		cmd := exec.Command(self, args...)
		cmd.Stdout, cmd.Stderr = out, os.Stderr
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("serve: edge process %d: %w", i, err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case <-ctx.Done():
			cmd.Process.Signal(syscall.SIGTERM)
			if err := <-exited; err != nil {
				return fmt.Errorf("serve: edge process %d: %w", i, err)
			}
			return nil
		case err := <-exited:
			fmt.Fprintf(out, "amphi: edge process %d exited (%v); restarting it in %v\n", i, err, procRestartWait)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(procRestartWait):
		}
	}
}

// withoutFlag returns args without the flag name and its value, in any of
// the forms package flag takes (-name v, --name v, -name=v, --name=v).
func withoutFlag(args []string, name string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := strings.TrimLeft(args[i], "-")
		switch {
		case a == name && args[i] != a:
			i++ // its value
		case strings.HasPrefix(a, name+"=") && args[i] != a:
		default:
			out = append(out, args[i])
		}
	}
	return out
}
