package saferetrytest

import (
	"math"
	"net/http"
	"strconv"
	"time"
)

// Kind is what a [Fault] does to the request it meets.
//
// The kinds that reset a connection do so with a TCP RST (SO_LINGER 0 on
// the hijacked connection) over HTTP/1.1. Over HTTP/2 they send
// RST_STREAM(INTERNAL_ERROR) on the request's stream instead, which is what
// Go's server does when a handler aborts.
type Kind int

const (
	// Pass serves the request normally: it is the zero Kind. With
	// Fault.Release set it holds the request before it is answered: a
	// write before its side effect is committed (and, when keyed, after
	// its key was marked in flight, so that a concurrent request with the
	// same key gets 409).
	Pass Kind = iota

	// Respond answers Fault.Status (default 503) with Fault.Header and
	// Fault.Body without processing the request: no side effect, no key
	// recorded. Use it for 5xx bursts, 429 or 503 with Retry-After, 408,
	// or a scripted 409 or 422.
	Respond

	// Hang reads the request and answers nothing: when the request's
	// context is done or the server closes, it aborts the connection
	// (HTTP/1.x) or the stream (HTTP/2). Nothing is processed.
	Hang

	// ResetAfterHeaders resets the connection once the request headers were
	// read, before the body is read. Nothing is processed. A client still
	// writing a large body may see EPIPE from its write instead of
	// ECONNRESET.
	ResetAfterHeaders

	// ResetAfterCommit reads the whole body, processes the request (a write
	// commits its side effect and a keyed write stores its response), then
	// resets the connection instead of answering: the response is lost
	// after the effect happened, the classic duplicated payment.
	ResetAfterCommit

	// ResetMidResponse processes the request, sends the status line, the
	// headers with the full Content-Length and Fault.Cut bytes of the body,
	// then resets the connection.
	ResetMidResponse

	// Truncate processes the request, sends the status line, the headers
	// with the full Content-Length and Fault.Cut bytes of the body, then
	// closes the connection cleanly (FIN; over HTTP/2, END_STREAM), so the
	// client reads io.ErrUnexpectedEOF.
	Truncate

	// SlowBody processes the request and sends the body in pieces of
	// Fault.Chunk bytes, sending the next piece each time Fault.Step
	// yields a value or, without Step, after Fault.Delay.
	SlowBody

	// FailBeforeCommit reads the whole body and processes the request up
	// to the commit as Pass does (a keyed write's key is marked in
	// flight, so a concurrent request with the same key gets 409), holds
	// there while Fault.Release says so, then fails instead of
	// committing: nothing is applied, a key it marked in flight is freed
	// so that a retry with it is processed afresh, and the request gets
	// Fault.Status or, when Status is 0, a reset. It is a server that
	// failed while processing the first request with a key: what a
	// client's hedge meets as a 409 just before the first request fails.
	FailBeforeCommit
)

var kindNames = [...]string{
	Pass:              "Pass",
	Respond:           "Respond",
	Hang:              "Hang",
	ResetAfterHeaders: "ResetAfterHeaders",
	ResetAfterCommit:  "ResetAfterCommit",
	ResetMidResponse:  "ResetMidResponse",
	Truncate:          "Truncate",
	SlowBody:          "SlowBody",
	FailBeforeCommit:  "FailBeforeCommit",
}

// String returns the constant's name, for test names and logs.
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// processes reports whether a request meeting this kind reaches the point
// where a write commits its side effect.
func (k Kind) processes() bool {
	switch k {
	case Respond, Hang, ResetAfterHeaders:
		return false
	}
	return true
}

// Fault is one scripted fault. The zero value is a Pass that serves one
// request normally. A Fault is copied when scripted; the channels in it are
// shared by every request it applies to.
type Fault struct {
	// Kind is what the fault does; default Pass.
	Kind Kind

	// Count is how many consecutive requests to the path meet this fault:
	// 0 or 1 mean one; a negative Count means every request from then on
	// (faults scripted after it are never reached).
	Count int

	// Status is the status a Respond fault answers (default 503), and
	// the one FailBeforeCommit answers (default none: a reset).
	Status int

	// Header is set on the response, replacing the server's values for the
	// same names (Retry-After, Content-Type, ...). It applies to every kind
	// that sends a response header.
	Header http.Header

	// Body, when not nil, replaces the body the server would send: the
	// status text for Respond, the receipt of a normal answer otherwise.
	Body []byte

	// Cut is how many body bytes ResetMidResponse and Truncate send before
	// the cut; default half the body. It is always less than the body.
	Cut int

	// Chunk is the piece size of SlowBody; default 8 bytes.
	Chunk int

	// Step, when not nil, paces SlowBody: the first piece goes out with the
	// headers and each further piece after one receive from Step.
	Step <-chan struct{}

	// Delay paces SlowBody when Step is nil; default 100 ms. For demos:
	// a test wanting determinism uses Step.
	Delay time.Duration

	// Arrived, when not nil, receives one value from each request that
	// reaches the fault's hold point (see Release), or starts to hang
	// (Hang), or sends its first piece (SlowBody). The send blocks until it
	// is received, the request's context is done or the server closes.
	Arrived chan<- struct{}

	// Release, when not nil, holds the request at the fault's hold point
	// until a value can be received from it (closing it releases all):
	// for Pass before the commit or the answer (see Pass), and for
	// FailBeforeCommit at the same point, before it fails; for Respond
	// before answering; for ResetAfterHeaders and
	// ResetAfterCommit before the reset; for ResetMidResponse and Truncate
	// after the partial body, before the cut. A request whose context ends
	// while held, or that is held when the server closes, is aborted
	// without an answer (and, held before its commit, without effect).
	Release <-chan struct{}
}

// Burst returns a fault answering status to the next n requests of a path:
// a 5xx burst is Burst(3, 503), after which the path serves normally again.
func Burst(n, status int) Fault {
	return Fault{Kind: Respond, Status: status, Count: n}
}

// RetryAfter returns a Respond fault answering status with the given
// Retry-After header value, once.
func RetryAfter(status int, value string) Fault {
	return Fault{Kind: Respond, Status: status, Header: http.Header{"Retry-After": {value}}}
}

// RetryAfterCase is one Retry-After header value with what a correct parser
// makes of it.
type RetryAfterCase struct {
	// Name says which form the value is in, for subtest names.
	Name string
	// Value is the header value, sent as is.
	Value string
	// Valid reports whether RFC 9110 §10.2.3 allows the value: a
	// non-negative integer of seconds or an HTTP-date in one of its three
	// formats.
	Valid bool
	// Delay is what a correct parser computes from Value at the reference
	// time given to [RetryAfterCases]: HTTP-dates have whole seconds, so a
	// date may mean up to a second less than asked; a date in the past
	// means 0. A value too large for a time.Duration saturates at
	// math.MaxInt64. Zero when Valid is false.
	Delay time.Duration
}

// Layouts of the two obsolete HTTP-date formats (RFC 9110 §5.6.7), with
// the literal "GMT" the RFC requires (time.RFC850 would print "UTC").
const (
	rfc850Layout  = "Monday, 02-Jan-06 15:04:05 GMT"
	asctimeLayout = "Mon Jan _2 15:04:05 2006"
)

// RetryAfterCases returns Retry-After values in every form a server may
// send, each asking for a wait of about d after now: delta-seconds,
// IMF-fixdate, RFC 850 date, asctime date, a date in the past, a value of
// 0, huge values (seconds and a date), and invalid ones (garbage, negative,
// fractional, empty). A test sends each with [RetryAfter] and checks its
// client against Valid and Delay.
func RetryAfterCases(now time.Time, d time.Duration) []RetryAfterCase {
	now = now.UTC()
	at := now.Add(d).Truncate(time.Second)
	dateDelay := max(at.Sub(now), 0)
	secs := int64((d + time.Second - 1) / time.Second) // rounded up
	past := now.Add(-time.Hour).Truncate(time.Second)
	return []RetryAfterCase{
		{Name: "delta-seconds", Value: strconv.FormatInt(secs, 10), Valid: true, Delay: time.Duration(secs) * time.Second},
		{Name: "zero", Value: "0", Valid: true, Delay: 0},
		{Name: "IMF-fixdate", Value: at.Format(http.TimeFormat), Valid: true, Delay: dateDelay},
		{Name: "RFC-850", Value: at.Format(rfc850Layout), Valid: true, Delay: dateDelay},
		{Name: "asctime", Value: at.Format(asctimeLayout), Valid: true, Delay: dateDelay},
		{Name: "past-date", Value: past.Format(http.TimeFormat), Valid: true, Delay: 0},
		{Name: "huge-seconds", Value: "99999999999", Valid: true, Delay: math.MaxInt64},
		{Name: "huge-date", Value: "Fri, 31 Dec 9999 23:59:59 GMT", Valid: true, Delay: math.MaxInt64},
		{Name: "garbage", Value: "soon, please"},
		{Name: "negative", Value: "-5"},
		{Name: "fractional", Value: "1.5"},
		{Name: "empty", Value: ""},
	}
}
