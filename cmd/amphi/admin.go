package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/amphi-audio/amphi"
	"github.com/amphi-audio/amphi/internal/account"
	"github.com/amphi-audio/amphi/internal/store"
)

// runAdmin runs `amphi admin SUBCOMMAND`. It works on the data directory
// directly, not over HTTP: creating the first admin must not need an
// account, so it needs access to the server's files instead.
func runAdmin(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return fmt.Errorf("admin: usage: amphi admin create --data DIR --email EMAIL [--password-file FILE] (password on stdin otherwise)")
	}
	fs := flag.NewFlagSet("amphi admin create", flag.ContinueOnError)
	data := fs.String("data", DefaultConfig().DataDir, "data directory of the server")
	email := fs.String("email", "", "the admin's email address (required)")
	pwFile := fs.String("password-file", "", "read the password from this file instead of stdin")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("admin create: unexpected argument %q", fs.Arg(0))
	}
	if *email == "" {
		return fmt.Errorf("admin create: --email is required")
	}
	password, err := passwordFrom(*pwFile, stdin)
	if err != nil {
		return fmt.Errorf("admin create: %w", err)
	}
	if err := os.MkdirAll(*data, 0o700); err != nil {
		return fmt.Errorf("admin create: data directory: %w", err)
	}
	db, err := store.Open(ctx, filepath.Join(*data, "amphi.db"))
	if err != nil {
		return fmt.Errorf("admin create: %w", err)
	}
	defer db.Close()
	svc, err := account.New(account.DefaultConfig(), db)
	if err != nil {
		return fmt.Errorf("admin create: %w", err)
	}
	u, err := svc.CreateUser(ctx, *email, password, store.UserAdmin)
	if err != nil {
		var e *amphi.Error
		if errors.As(err, &e) { // a message for people, not the store's chain
			return fmt.Errorf("admin create: %s", e.Message)
		}
		return fmt.Errorf("admin create: %w", err)
	}
	fmt.Fprintf(stdout, "created admin %s (id %s)\n", u.Email, u.ID)
	return nil
}

// passwordFrom reads a password from the file at path, or from stdin if
// path is "".
func passwordFrom(path string, stdin io.Reader) (string, error) {
	if path == "" {
		return readPassword(stdin)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return readPassword(f)
}

// readPassword reads the first line of r, without its line ending, so that
// `echo PASSWORD | amphi admin create` and a password file both work.
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("no password given: write it on stdin or name a --password-file")
	}
	return line, nil
}
