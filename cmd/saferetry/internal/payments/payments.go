// Package payments is a small, deliberately flaky payments API that
// deduplicates charges by Idempotency-Key, for the saferetry demo command.
//
// Its routes are
//
//	GET  /v1/balance   the total charged, per currency
//	GET  /v1/charges   every charge committed so far
//	POST /v1/charges   {"amount": 4200, "currency": "eur", "card": "card_x"}
//
// A POST carrying an Idempotency-Key is processed once: the API stores its
// response under the key and replays it to every later request with the
// same key and payload (and answers 422 to the same key with another
// payload). A POST without a key is processed every time it arrives, as an
// API that does not deduplicate would.
//
// Failures are scripted per route with Script: each request to a route
// consumes the next scripted Fault, if any, and is otherwise served
// normally. That keeps a demo reproducible: the same script always fails
// the same attempts.
package payments

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// KeyHeader is the request header the API deduplicates charges by.
const KeyHeader = "Idempotency-Key"

// ReplayedHeader is set to "true" on a response replayed for a key, as
// Stripe's Idempotent-Replayed header is.
const ReplayedHeader = "Idempotent-Replayed"

// maxBodyBytes bounds the charge requests the API reads.
const maxBodyBytes = 64 << 10

// Fault is one scripted failure, consumed by the next request to the route
// it was scripted for. The zero value is no fault.
type Fault struct {
	kind       faultKind
	status     int
	retryAfter string
}

type faultKind int

const (
	faultNone faultKind = iota
	faultStatus
	faultCut
	faultStall
)

// Status fails a request with the given status without processing it,
// with a Retry-After header when retryAfter is not empty.
func Status(code int, retryAfter string) Fault {
	return Fault{kind: faultStatus, status: code, retryAfter: retryAfter}
}

// CutAfterCommit processes a request in full (a charge is committed and
// its response stored under its key) and then cuts the connection with a
// TCP reset instead of replying: the client cannot tell whether its
// request took effect. Over HTTP/2, where a connection cannot be taken
// over, the stream is aborted instead.
func CutAfterCommit() Fault { return Fault{kind: faultCut} }

// Stall receives a request in full, body included, and then holds it
// without processing it, as a stalled replica would, until the request's
// context ends: the client gave up (canceled it, or closed its connection)
// or the server shut down. It never commits anything and never answers.
// The body is read first because net/http's server notices a client that
// went away only once the request's body has been read.
func Stall() Fault { return Fault{kind: faultStall} }

// String describes the fault.
func (f Fault) String() string {
	switch f.kind {
	case faultStatus:
		s := strconv.Itoa(f.status) + " " + http.StatusText(f.status)
		if f.retryAfter != "" {
			s += ", Retry-After: " + f.retryAfter
		}
		return s
	case faultCut:
		return "cut after commit"
	case faultStall:
		return "stall until the client gives up"
	}
	return "none"
}

// Request is what the API recorded about one request it received.
type Request struct {
	Seq    int       // order of arrival, from 1
	At     time.Time // when it arrived
	Method string
	Path   string
	Key    string // its Idempotency-Key, "" if none
	Fault  Fault  // the scripted fault it consumed, if any
	// Status is the status the API answered with; 0 when the connection
	// was cut instead, or the request stalled until the client gave up.
	Status int
	// Replayed reports that the answer was a stored response, replayed
	// for the request's key.
	Replayed bool
}

// Charge is a committed charge.
type Charge struct {
	ID       string `json:"id"`
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	Card     string `json:"card"`
}

// Event is one thing the API did, described for a human, for the API's
// log hook.
type Event struct {
	At      time.Time
	Request int    // the Seq of the request it concerns
	Msg     string // what the API did, in words
}

// API is the flaky payments API, an http.Handler. Create it with New. Its
// methods are safe for concurrent use, including while it serves.
type API struct {
	log func(Event)
	mux *http.ServeMux

	mu       sync.Mutex
	active   int                // handlers running
	idle     chan struct{}      // closed when active drops to 0
	script   map[string][]Fault // route pattern -> faults still to consume
	received []Request
	charges  []Charge
	byKey    map[string]storedResponse
}

// storedResponse is what the API answered for a key, and the payload it
// answered it for.
type storedResponse struct {
	digest [sha256.Size]byte
	status int
	body   []byte
	charge string
}

var _ http.Handler = (*API)(nil)

// New returns an API with no charges and no faults scripted. log, if not
// nil, is called for every request the API receives and everything it
// does, on the request's goroutine, before the response is written (so a
// client never sees an answer before its log line); it must not block.
func New(log func(Event)) *API {
	a := &API{
		log:    log,
		mux:    http.NewServeMux(),
		script: make(map[string][]Fault),
		byKey:  make(map[string]storedResponse),
	}
	a.route("GET /v1/balance", a.balance)
	a.route("GET /v1/charges", a.listCharges)
	a.route("POST /v1/charges", a.createCharge)
	return a
}

// Script queues faults for route, a pattern such as "GET /v1/balance":
// each request to it consumes the next one, in order, after any faults
// already queued. Script panics on an unknown route.
func (a *API) Script(route string, faults ...Fault) {
	switch route {
	case "GET /v1/balance", "GET /v1/charges", "POST /v1/charges":
	default:
		panic(fmt.Sprintf("payments: Script(%q): unknown route", route))
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.script[route] = append(a.script[route], faults...)
}

// Requests returns every request received so far, in order of arrival.
func (a *API) Requests() []Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.received)
}

// Charges returns every charge committed so far, in order.
func (a *API) Charges() []Charge {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.charges)
}

// ChargesPerCard counts the charges committed so far for each card.
func (a *API) ChargesPerCard() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := make(map[string]int)
	for _, c := range a.charges {
		n[c.Card]++
	}
	return n
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// reply is a handler's answer, written by route unless a fault cuts it.
type reply struct {
	status   int
	body     []byte
	replayed bool
}

// route registers fn for pattern behind the API's bookkeeping: record the
// request, consume its fault, and log what happened.
func (a *API) route(pattern string, fn func(r *http.Request, seq int, key string) reply) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		key := requestKey(r.Header)
		seq, fault := a.receive(pattern, r, key)
		defer a.done()
		a.logf(seq, "received %s %s, %s", r.Method, r.URL.Path, describeKey(key))
		if fault.kind == faultStall {
			_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, maxBodyBytes+1))
			a.logf(seq, "stalled: holding it without processing it (scripted fault)")
			<-r.Context().Done()
			a.logf(seq, "the client gave up on it: nothing committed, no reply")
			return
		}
		if fault.kind == faultStatus {
			if fault.retryAfter != "" {
				w.Header().Set("Retry-After", fault.retryAfter)
			}
			a.answered(seq, fault.status, false)
			a.logf(seq, "replied %s (scripted fault)", fault)
			writeJSON(w, fault.status, errorBody(http.StatusText(fault.status)))
			return
		}
		rep := fn(r, seq, key)
		if fault.kind == faultCut {
			a.logf(seq, "cut the connection without replying (scripted fault)")
			cut(w)
			return
		}
		a.answered(seq, rep.status, rep.replayed)
		if rep.replayed {
			w.Header().Set(ReplayedHeader, "true")
		} else {
			a.logf(seq, "replied %d %s", rep.status, http.StatusText(rep.status))
		}
		writeJSON(w, rep.status, rep.body)
	})
}

// receive records a request and consumes the next fault of its route.
func (a *API) receive(pattern string, r *http.Request, key string) (int, Fault) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var fault Fault
	if queue := a.script[pattern]; len(queue) > 0 {
		fault, a.script[pattern] = queue[0], queue[1:]
	}
	if a.active == 0 {
		a.idle = make(chan struct{})
	}
	a.active++
	seq := len(a.received) + 1
	a.received = append(a.received, Request{
		Seq: seq, At: time.Now(), Method: r.Method, Path: r.URL.Path, Key: key, Fault: fault,
	})
	return seq, fault
}

// done records that a handler, counted by receive, has returned.
func (a *API) done() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.active--
	if a.active == 0 {
		close(a.idle)
	}
}

// Wait returns once no request is being handled, or ctx's error when ctx
// ends first. Scripted faults make some requests outlive their client's
// interest (Stall holds one until the client gives up), so a caller that
// wants the whole story of what it sent waits for the API to be idle
// before reading Requests or Charges. Requests that arrive while it waits
// are waited for too.
func (a *API) Wait(ctx context.Context) error {
	for {
		a.mu.Lock()
		if a.active == 0 {
			a.mu.Unlock()
			return nil
		}
		idle := a.idle
		a.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// answered records the status a request was answered with.
func (a *API) answered(seq, status int, replayed bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.received[seq-1].Status = status
	a.received[seq-1].Replayed = replayed
}

func (a *API) logf(seq int, format string, args ...any) {
	if a.log != nil {
		a.log(Event{At: time.Now(), Request: seq, Msg: fmt.Sprintf(format, args...)})
	}
}

func (a *API) balance(*http.Request, int, string) reply {
	a.mu.Lock()
	available := make(map[string]int64)
	for _, c := range a.charges {
		available[c.Currency] += c.Amount
	}
	a.mu.Unlock()
	return reply{status: http.StatusOK, body: mustJSON(map[string]any{"available": available})}
}

func (a *API) listCharges(*http.Request, int, string) reply {
	charges := a.Charges()
	if charges == nil {
		charges = []Charge{}
	}
	return reply{status: http.StatusOK, body: mustJSON(map[string]any{"data": charges})}
}

// createCharge commits a charge, or replays the response stored for the
// request's key. Charges are processed one at a time, under the lock, so
// two requests with the same key never race (a real API would answer the
// second 409 Conflict while the first is in progress).
func (a *API) createCharge(r *http.Request, seq int, key string) reply {
	payload, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return reply{status: http.StatusBadRequest, body: errorBody("unreadable body")}
	}
	if len(payload) > maxBodyBytes {
		return reply{status: http.StatusRequestEntityTooLarge, body: errorBody("body too large")}
	}
	var in struct {
		Amount   int64  `json:"amount"`
		Currency string `json:"currency"`
		Card     string `json:"card"`
	}
	if err := json.Unmarshal(payload, &in); err != nil || in.Amount <= 0 || in.Currency == "" || in.Card == "" {
		return reply{status: http.StatusBadRequest, body: errorBody("want a JSON object with a positive amount, a currency and a card")}
	}
	digest := sha256.Sum256(payload)

	// The log hook runs under the lock here; it must not call back into
	// the API (New's contract: it must not block).
	a.mu.Lock()
	defer a.mu.Unlock()
	if key != "" {
		if stored, ok := a.byKey[key]; ok {
			if stored.digest != digest {
				a.logf(seq, "rejected key %s: reused with a different payload", key)
				return reply{status: http.StatusUnprocessableEntity, body: errorBody("Idempotency-Key reused with a different payload")}
			}
			a.logf(seq, "replayed stored response for key %s (%d %s, charge %s)",
				key, stored.status, http.StatusText(stored.status), stored.charge)
			return reply{status: stored.status, body: stored.body, replayed: true}
		}
	}
	charge := Charge{
		ID:       "ch_" + strconv.Itoa(len(a.charges)+1),
		Amount:   in.Amount,
		Currency: in.Currency,
		Card:     in.Card,
	}
	a.charges = append(a.charges, charge)
	body := mustJSON(charge)
	if key != "" {
		a.byKey[key] = storedResponse{digest: digest, status: http.StatusCreated, body: body, charge: charge.ID}
	}
	a.logf(seq, "committed charge %s: %s on %s", charge.ID, formatAmount(charge.Amount, charge.Currency), charge.Card)
	return reply{status: http.StatusCreated, body: body}
}

// cut closes the request's connection with a TCP reset, without a
// response. Where the connection cannot be taken over (HTTP/2), the
// handler panics with http.ErrAbortHandler, which aborts the stream
// without a response either.
func cut(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		// Linger 0 makes Close send RST rather than FIN: the client
		// sees "connection reset", the harshest way to lose an answer.
		_ = tcp.SetLinger(0)
	}
	_ = conn.Close()
}

// requestKey returns the request's idempotency key, unquoting the
// structured-field form ("...") some clients send.
func requestKey(h http.Header) string {
	key := h.Get(KeyHeader)
	if len(key) >= 2 && key[0] == '"' && key[len(key)-1] == '"' {
		key = key[1 : len(key)-1]
	}
	return key
}

func describeKey(key string) string {
	if key == "" {
		return "no Idempotency-Key"
	}
	return "Idempotency-Key " + key
}

func formatAmount(minor int64, currency string) string {
	return fmt.Sprintf("%d.%02d %s", minor/100, minor%100, strings.ToUpper(currency))
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func errorBody(msg string) []byte {
	return mustJSON(map[string]any{"error": map[string]string{"message": msg}})
}

// mustJSON encodes v, which is always one of the API's own plain values.
func mustJSON(v any) []byte {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		panic("payments: encoding a response: " + err.Error())
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// Server serves a handler on a loopback port, for a demo or a test.
type Server struct {
	// URL is the server's base URL, such as http://127.0.0.1:41234.
	URL string

	srv    *http.Server
	served chan error
}

// Start serves h on 127.0.0.1 at a port the system picks, until Close.
func Start(h http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("payments: listening on loopback: %w", err)
	}
	s := &Server{
		URL:    "http://" + ln.Addr().String(),
		srv:    &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second},
		served: make(chan error, 1),
	}
	go func() { s.served <- s.srv.Serve(ln) }()
	return s, nil
}

// Close stops the server gracefully: it stops accepting, closes idle
// connections, waits for requests in flight until ctx is done, and returns
// once the serving goroutine has exited.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	if serveErr := <-s.served; !errors.Is(serveErr, http.ErrServerClosed) && err == nil {
		err = serveErr
	}
	return err
}
