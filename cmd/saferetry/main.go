// Command saferetry sends HTTP requests the way the saferetry library
// does, and shows what the library does against an embedded, deliberately
// flaky payments API on loopback.
//
// Usage:
//
//	saferetry [command] [flags]
//
// Commands:
//
//	demo    heal 503s with backoff, honour a 429's Retry-After, survive a
//	        connection cut after a charge was committed without charging
//	        twice (the default command)
//	storm   run a retry storm against a capacity-limited server and compare
//	        retry configurations side by side: live on loopback, or as a
//	        discrete-event simulation of up to a million clients; writes an
//	        SVG chart of attempts over time
//	do      send one request, like curl, through saferetry's default stack:
//	        retried safely, a write never doubled; with --operation and
//	        --store, a run killed mid-write and run again sends the same
//	        idempotency key
//
// Run "saferetry <command> -h" for a command's flags. demo and storm exit
// with status 1 when what they observed diverged from what saferetry
// promises, and 2 on a usage error; do's exit statuses tell a script
// whether running it again is safe (see "saferetry do -h").
//
// The command is a module of its own (cmd/saferetry/go.mod), in the
// repository's workspace: do keeps keys in the keystore module's SQLite
// and Redis stores, whose dependencies the core module must not carry.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
)

// command is one subcommand. run parses its own flags from args and
// writes its results to stdout; an error it returns is printed to stderr.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands lists the subcommands, the default first. A new subcommand is
// one more entry here, with its run function in files of its own.
var commands = []command{
	{
		name:    "demo",
		summary: "drive a client through a flaky payments API and check it heals without double charges",
		run:     demoCommand,
	},
	{
		name:    "storm",
		summary: "run a retry storm (live on loopback, or simulated) and compare retry configurations",
		run:     stormCommand,
	},
	{
		name:    "do",
		summary: "send one request like curl, retried safely, a write never doubled",
		run:     doCommand,
	},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// usageError is a bad invocation (flags or arguments): exit status 2.
// printed reports that the flag package has already explained it.
type usageError struct {
	err     error
	printed bool
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// exitError ends a command with an exit status of its own choosing (do's
// 3, 4 and 5, which tell a script whether a rerun is safe).
type exitError struct {
	status int
	err    error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// run dispatches args to a subcommand and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	name := commands[0].name
	if len(args) > 0 {
		switch args[0] {
		case "help", "-h", "-help", "--help":
			usage(stdout)
			return 0
		}
		if args[0] != "" && args[0][0] != '-' {
			name, args = args[0], args[1:]
		}
	}
	cmd, ok := lookup(name)
	if !ok {
		fmt.Fprintf(stderr, "saferetry: unknown command %q\n\n", name)
		usage(stderr)
		return 2
	}
	err := cmd.run(ctx, args, stdout, stderr)
	var uerr *usageError
	var xerr *exitError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &uerr):
		if !uerr.printed {
			fmt.Fprintf(stderr, "saferetry %s: %v\n", name, err)
		}
		return 2
	case errors.As(err, &xerr):
		fmt.Fprintf(stderr, "saferetry %s: %v\n", name, err)
		return xerr.status
	}
	fmt.Fprintf(stderr, "saferetry %s: %v\n", name, err)
	return 1
}

// parseFlags parses args with fs, mapping its errors onto run's exit
// statuses. fs must use flag.ContinueOnError.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err: err, printed: true}
	}
	if fs.NArg() > 0 {
		return &usageError{err: fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

func lookup(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: saferetry [command] [flags]\n\nCommands:\n")
	for i, c := range commands {
		def := ""
		if i == 0 {
			def = " (default)"
		}
		fmt.Fprintf(w, "  %-8s %s%s\n", c.name, c.summary, def)
	}
	fmt.Fprintf(w, "\nRun \"saferetry <command> -h\" for a command's flags.\n")
}
