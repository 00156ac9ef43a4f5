package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/amphi-audio/amphi/internal/client"
	"github.com/amphi-audio/amphi/internal/feed"
)

const defaultServer = "http://127.0.0.1:8080"

// apiTimeout bounds one API call of the CLI.
const apiTimeout = 15 * time.Second

// runCreate creates a space and prints it, with its tokens and URLs, as one
// JSON object.
func runCreate(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("amphi create", flag.ContinueOnError)
	server := fs.String("server", defaultServer, "amphi server URL")
	title := fs.String("title", "", "the space's title (required)")
	description := fs.String("description", "", "what the space is about")
	at := fs.String("at", "", "scheduled start, RFC 3339; empty means live now")
	email := fs.String("email", "", "sign in as this host or admin first: the space is theirs (needed with serve --require-accounts)")
	passwordFile := fs.String("password-file", "", "with --email: a file holding the password (default: read it from standard input)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *title == "" {
		return errors.New("create: --title is required")
	}
	var when *time.Time
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return fmt.Errorf("create: --at must be RFC 3339, such as 2026-12-01T18:00:00Z: %w", err)
		}
		when = &t
	}
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	c := client.New(*server)
	if *email != "" {
		password, err := passwordFrom(*passwordFile, os.Stdin)
		if err != nil {
			return fmt.Errorf("create: %w", err)
		}
		if err := c.SignIn(ctx, *email, password); err != nil {
			return fmt.Errorf("create: signing in: %w", err)
		}
	}
	sp, err := c.CreateSpace(ctx, client.NewSpace{Title: *title, Description: *description, At: when})
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	return printJSON(stdout, sp)
}

// runLifecycle starts or ends a space.
func runLifecycle(ctx context.Context, cmd string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("amphi "+cmd, flag.ContinueOnError)
	server, space, token := spaceFlags(fs)
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *space == "" || *token == "" {
		return fmt.Errorf("%s: --space and --token (the host token) are required", cmd)
	}
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	c := client.New(*server)
	act := c.Start
	if cmd == "end" {
		act = c.End
	}
	sp, err := act(ctx, *space, *token)
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	return printJSON(stdout, sp)
}

// runSpeak streams a WAV or Ogg Opus file to a space's stage over WHIP, in
// real time, until the file ends (or forever with --loop) or a signal. A
// session that fails (the server restarted, say) is dialled again with
// backoff: forever with --loop, a bounded number of times otherwise.
func runSpeak(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("amphi speak", flag.ContinueOnError)
	server, space, token := spaceFlags(fs)
	loop := fs.Bool("loop", false, "play the file again and again until interrupted, dialling again whenever the server goes away")
	bitrate := fs.Int("bitrate", 32000, "Opus bitrate for WAV input, bit/s")
	if err := parseFlags(fs, args, 1); err != nil {
		return err
	}
	if *space == "" || *token == "" {
		return errors.New("speak: --space and --token (a speaker or host token) are required")
	}
	pkts, err := feed.Load(fs.Arg(0), *bitrate)
	if err != nil {
		return fmt.Errorf("speak: %w", err)
	}
	s := &speaker{endpoint: client.New(*server).WHIPURL(*space), token: *token, out: stdout, dials: boundedDials}
	if *loop {
		s.dials = 0
	}
	fmt.Fprintf(stdout, "speaking %s into space %s (%d packets%s)\n", fs.Arg(0), *space, len(pkts), map[bool]string{true: ", looping"}[*loop])
	if err := s.run(ctx, pkts, *loop); err != nil {
		return fmt.Errorf("speak: %w", err)
	}
	return nil
}

// runListen receives a space's live stream and prints what arrived.
func runListen(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("amphi listen", flag.ContinueOnError)
	server := fs.String("server", defaultServer, "amphi server URL")
	space := fs.String("space", "", "space id (required)")
	out := fs.String("out", "", "write the stream to this file")
	dur := fs.Duration("for", 0, "stop after this long (0: until the space ends)")
	burst := fs.Duration("burst", 0, "ask for this much audio at once on connect (0: the server's default)")
	from := fs.String("from", "", `rewind: "start" hears the space from its beginning, "-5m" five minutes behind live`)
	resume := fs.Duration("resume", client.DefaultResumeFor, "how long a broken stream is asked for again from where it was (from_seq); negative is never")
	servers := fs.String("servers", "", "comma-separated base URLs of the same service's other addresses: resumes go to each in turn")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *space == "" {
		return errors.New("listen: --space is required")
	}
	opts := client.ListenOptions{Burst: *burst, From: *from, ResumeFor: *resume}
	if *servers != "" {
		opts.Servers = strings.Split(*servers, ",")
	}
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		defer f.Close()
		opts.Out = f
	}
	if *dur > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *dur)
		defer cancel()
	}
	st, err := client.New(*server).Listen(ctx, *space, opts)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return printJSON(stdout, map[string]any{
		"bytes":          st.Bytes,
		"packets":        st.Packets,
		"duration":       st.Audio.String(),
		"first_audio":    st.FirstAudio.String(),
		"longest_gap":    st.LongestGap.String(),
		"timeline_holes": st.Holes,
		"resumes":        st.Resumes,
		"longest_resume": st.LongestResume.String(),
		"ended":          st.Ended,
	})
}

func spaceFlags(fs *flag.FlagSet) (server, space, token *string) {
	server = fs.String("server", defaultServer, "amphi server URL")
	space = fs.String("space", "", "space id (required)")
	token = fs.String("token", "", "bearer token (required)")
	return
}

// parseFlags parses flags before and after positional arguments (as in
// "speak ... FILE --loop") and checks how many positional ones there are.
// Afterwards fs.Arg(i) returns them.
func parseFlags(fs *flag.FlagSet, args []string, positional int) error {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != positional {
		return fmt.Errorf("%s: want %d argument(s), got %d", fs.Name(), positional, len(pos))
	}
	return fs.Parse(append([]string{"--"}, pos...))
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
