package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"
)

// doHelp is "saferetry do -h". It is the command's reference: flags, how
// they are parsed, and what each exit status tells a script.
var doHelp = fmt.Sprintf(`Usage: saferetry do [flags] URL

Sends one HTTP request through saferetry's default stack, as curl would, and
writes the response body to stdout. Unlike curl --retry, it never doubles a
write: a POST or PATCH carries an Idempotency-Key that every retry reuses,
and any other non-idempotent request is retried only when it provably never
reached the server. Transient failures (connection errors, 408, 429, 500,
502, 503, 504) are retried with capped exponential backoff and jitter, after
the server's wait when it announces one (Retry-After, rate-limit headers).
A single run has no history for a retry budget to bound, so none is kept:
--retries is what it does. Redirects are not followed.

Durable keys: with --operation NAME --store sqlite:PATH (or redis://ADDR),
the key is written to the store before the request is sent. A run killed
mid-write and run again with the same NAME, store and request sends the same
key, so a server that deduplicates by key applies the write once. Derive NAME
from your own identifiers (an order number, a date), never from anything
random. Once the answer is final (a 2xx, a 303, or a 4xx other than 408,
409, 413 and 429) the operation is done: running it again sends nothing and
exits with status 2.

Flags come before or after the URL; "--" ends them. -flag and --flag are the
same flag; single-letter flags are not combined (-v -i, not -vi).

  -X, --request METHOD  the method: GET, or POST with -d
  -H, --header 'Name: value'
                        add a header; repeat for more. A Host header sets
                        the request's host. Content-Length and
                        Transfer-Encoding are set from the data, not by -H
  -d, --data DATA       send DATA, byte for byte (no newline is stripped);
                        -d @FILE sends a file, -d @- standard input. It is
                        read whole before anything is sent, so every attempt
                        sends the same bytes. Makes the method POST unless -X
                        says otherwise, and Content-Type
                        application/x-www-form-urlencoded unless -H sets one,
                        as curl does. At most once, and not with GET, HEAD or
                        TRACE (their bodies have no meaning)
  -i, --include         write the response's status line and headers to
                        stdout before its body
  -v, --verbose         describe the request, each attempt, each retry and
                        why retrying stopped, one line each, on stderr. Never
                        prints header values, bodies, or the URL's path and
                        query (webhook URLs carry secrets there)
  -f, --fail            when the final status is 400 or more, write nothing
                        to stdout and exit with status 1, as curl --fail
  --retries N           retries after the first attempt (default %d; 0: none)
  --timeout D           bound the whole run, retries, waits and the body
                        included, e.g. 30s (default: none)
  --attempt-timeout D   bound each attempt until its response headers
                        arrive (default: none)
  --operation NAME      name the write, for a durable key; needs --store.
                        Keys the request whatever its method (not GET, HEAD,
                        OPTIONS or TRACE, which write nothing); not with an
                        Idempotency-Key header of your own
  --store SPEC          where --operation keeps its key: sqlite:PATH (a file,
                        created if missing) or redis://[user:password@]host:port[/db]
                        (rediss:// for TLS)

Exit status:
  0  the server answered (any status, unless --fail)
  1  --fail and the final status was 400 or more; or writing stdout failed
  2  bad usage, nothing sent: an unknown flag, a bad header, URL, file or
     store; also an --operation already done, or begun with another request
  3  a transport error, and the request provably never reached the server
     (no connection was ever made, or the key store failed first): safe to
     run again
  4  a transport error, and the request may have reached the server (or
     did: its response body was cut): run it again only if it is
     idempotent (GET, PUT, DELETE, ...) or was sent with --operation, with
     the same --operation and --store
  5  saferetry refused to send it itself (a retry budget or the throttle,
     which a single run does not keep), and nothing reached the server:
     safe to run again, later
`, defaultDoRetries)

// defaultDoRetries is the stack's default retry limit, as -h states it.
const defaultDoRetries = 3

// doStdin is what -d @- reads. Tests replace it.
var doStdin io.Reader = os.Stdin

// doRequest is a checked invocation of do: everything it needs to send,
// all of it validated before anything is sent.
type doRequest struct {
	method         string
	url            *url.URL
	headers        []headerField
	host           string // from -H Host, or ""
	data           []byte
	hasData        bool
	include        bool
	verbose        bool
	fail           bool
	retries        int // -1: saferetry's default
	timeout        time.Duration
	attemptTimeout time.Duration
	operation      string
	store          storeSpec // zero without --operation
}

// doCommand is the do subcommand.
func doCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	d, err := parseDo(args, stderr)
	if err != nil {
		return err
	}
	return d.send(ctx, stdout, stderr)
}

// parseDo parses and checks do's arguments. Every error is a usage error:
// exit status 2, and nothing sent.
func parseDo(args []string, stderr io.Writer) (*doRequest, error) {
	fs := flag.NewFlagSet("saferetry do", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), doHelp) }
	var (
		method, operation, store string
		headers                  headerFlag
		data                     onceFlag
		include, verbose, fail   bool
		retries                  int
		timeout, attemptTimeout  time.Duration
	)
	for _, name := range []string{"X", "request"} {
		fs.StringVar(&method, name, "", "")
	}
	for _, name := range []string{"H", "header"} {
		fs.Var(&headers, name, "")
	}
	for _, name := range []string{"d", "data"} {
		fs.Var(&data, name, "")
	}
	for _, name := range []string{"i", "include"} {
		fs.BoolVar(&include, name, false, "")
	}
	for _, name := range []string{"v", "verbose"} {
		fs.BoolVar(&verbose, name, false, "")
	}
	for _, name := range []string{"f", "fail"} {
		fs.BoolVar(&fail, name, false, "")
	}
	fs.IntVar(&retries, "retries", 0, "")
	fs.DurationVar(&timeout, "timeout", 0, "")
	fs.DurationVar(&attemptTimeout, "attempt-timeout", 0, "")
	fs.StringVar(&operation, "operation", "", "")
	fs.StringVar(&store, "store", "", "")

	positional, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	d := &doRequest{include: include, verbose: verbose, fail: fail, retries: -1,
		timeout: timeout, attemptTimeout: attemptTimeout, operation: operation}
	switch len(positional) {
	case 0:
		return nil, usagef("no URL given")
	case 1:
	default:
		return nil, usagef("one URL at a time: got %q and %q", positional[0], positional[1])
	}
	if d.url, err = parseDoURL(positional[0]); err != nil {
		return nil, err
	}
	if set["retries"] {
		if retries < 0 {
			return nil, usagef("--retries %d: want 0 or more", retries)
		}
		d.retries = retries
	}
	if timeout < 0 {
		return nil, usagef("--timeout %v: want 0 (none) or more", timeout)
	}
	if attemptTimeout < 0 {
		return nil, usagef("--attempt-timeout %v: want 0 (none) or more", attemptTimeout)
	}

	d.method = method
	if set["X"] || set["request"] {
		if !isToken(method) {
			return nil, usagef("-X %q: not an HTTP method (a token such as GET or POST)", method)
		}
	} else if data.set {
		d.method = "POST"
	} else {
		d.method = "GET"
	}

	if data.set {
		switch d.method {
		case "GET", "HEAD", "TRACE":
			return nil, usagef("-d with -X %s: a %s request's body has no meaning; use POST, PUT or PATCH, or put the data in the URL", d.method, d.method)
		}
		if d.data, err = readData(data.value); err != nil {
			return nil, err
		}
		d.hasData = true
	}

	for _, h := range headers.fields {
		switch strings.ToLower(h.name) {
		case "host":
			d.host = h.value
			continue
		case "content-length", "transfer-encoding":
			return nil, usagef("-H %q: %s is set from the data (-d), not by a header", h.name+": "+h.value, h.name)
		}
		d.headers = append(d.headers, h)
	}

	if err := d.checkOperation(operation, store, set["operation"], set["store"]); err != nil {
		return nil, err
	}
	return d, nil
}

// checkOperation checks --operation and --store, together and against
// the request.
func (d *doRequest) checkOperation(operation, store string, opSet, storeSet bool) error {
	switch {
	case !opSet && !storeSet:
		return nil
	case !storeSet:
		return usagef("--operation without --store: give a durable store (sqlite:PATH or redis://ADDR) for its key, or the key dies with this process")
	case !opSet:
		return usagef("--store without --operation: the store keeps the key of a named operation; name it with --operation")
	case operation == "":
		return usagef(`--operation "": name the operation (an order number, a date)`)
	}
	switch d.method {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return usagef("--operation with %s: a %s writes nothing, so it needs no key; --operation is for POST, PUT, PATCH, DELETE and other writes", d.method, d.method)
	}
	for _, h := range d.headers {
		if strings.EqualFold(h.name, "Idempotency-Key") || strings.EqualFold(h.name, "X-Idempotency-Key") {
			return usagef("--operation with -H %s: the request already has its key, so the operation's would never be used; give one or the other", h.name)
		}
	}
	spec, err := parseStoreSpec(store)
	if err != nil {
		return err
	}
	d.store = spec
	return nil
}

// parseInterspersed parses flags before and after the positional
// arguments, as curl users expect: Go's flag package stops at the first
// argument that is not a flag. An argument "--" where a flag could be ends
// the flags; everything after it is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) (positional []string, err error) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &usageError{err: err, printed: true}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if endedByDashes(fs, args[:len(args)-len(rest)]) {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// endedByDashes reports whether fs stopped parsing at a "--" terminator,
// given the arguments it consumed: their last is "--", and it was not the
// value of the flag before it (-d -- sends two dashes).
func endedByDashes(fs *flag.FlagSet, consumed []string) bool {
	n := len(consumed)
	if n == 0 || consumed[n-1] != "--" {
		return false
	}
	if n == 1 {
		return true
	}
	prev := strings.TrimLeft(consumed[n-2], "-")
	if prev == consumed[n-2] || strings.Contains(prev, "=") {
		return true // not a flag, or a flag with its value attached
	}
	f := fs.Lookup(prev)
	if f == nil {
		return true
	}
	b, isBool := f.Value.(interface{ IsBoolFlag() bool })
	return isBool && b.IsBoolFlag()
}

// parseDoURL checks the URL: absolute, http or https, with a host.
func parseDoURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, usagef("bad URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, usagef("bad URL %q: want an absolute http:// or https:// URL", u.Redacted())
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, usagef("bad URL %q: no host", u.Redacted())
	}
	return u, nil
}

// readData resolves -d's value: literal data, @FILE or @- (stdin).
func readData(v string) ([]byte, error) {
	name, isFile := strings.CutPrefix(v, "@")
	if !isFile {
		return []byte(v), nil
	}
	switch name {
	case "":
		return nil, usagef("-d @: name a file after @ (or @- for standard input)")
	case "-":
		b, err := io.ReadAll(doStdin)
		if err != nil {
			return nil, usagef("-d @-: reading standard input: %v", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, usagef("-d @%s: %v", name, errors.Unwrap(err))
	}
	return b, nil
}

// headerField is one -H, checked.
type headerField struct{ name, value string }

// headerFlag collects -H flags, checking each as it is given.
type headerFlag struct{ fields []headerField }

func (f *headerFlag) String() string { return "" }

func (f *headerFlag) Set(s string) error {
	name, value, ok := strings.Cut(s, ":")
	if !ok {
		return errors.New("want 'Name: value' (no colon)")
	}
	if !isToken(name) {
		return fmt.Errorf("header name %q is not a token (letters, digits and !#$%%&'*+-.^_`|~, no spaces)", name)
	}
	value = strings.Trim(value, " \t")
	for i := 0; i < len(value); i++ {
		if c := value[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return fmt.Errorf("header %s: its value holds control character %#02x", name, c)
		}
	}
	f.fields = append(f.fields, headerField{name: name, value: value})
	return nil
}

// onceFlag is a string flag that may be given only once (-d: two bodies
// cannot both be sent, and curl's joining them with & is a surprise).
type onceFlag struct {
	value string
	set   bool
}

func (f *onceFlag) String() string { return "" }

func (f *onceFlag) Set(s string) error {
	if f.set {
		return errors.New("given twice: send one body (join form fields with & yourself)")
	}
	f.value, f.set = s, true
	return nil
}

// isToken reports whether s is an RFC 9110 token, as method and header
// names must be.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// usagef is a usage error: exit status 2, nothing sent.
func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}
