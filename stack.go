package saferetry

import (
	"net/http"
	"strconv"

	"github.com/saferetry/saferetry/internal/latency"
)

// Stack is the standard saferetry stack, outermost first: KeyInjector,
// BodyCache, Transport, then the base transport. Build it with New; its
// configuration is fixed once built. Safe for concurrent use.
type Stack struct {
	keys    KeyInjector
	bodies  BodyCache
	retries Transport
	choose  func(*http.Request) []Option // WithRequestOptionsFunc
}

var _ http.RoundTripper = (*Stack)(nil)

// New assembles the standard stack over base. A nil base means a fresh
// pooled transport from go-cleanhttp (never http.DefaultTransport, whose
// state every package in the process shares), with HTTP/2 health checks
// that close a connection that stopped answering: pinged after 30s
// without a frame, closed if the ping goes unanswered for 15s or a write
// makes no progress for 30s. The stack has a retry budget of its own
// (NewBudget's defaults) unless WithBudget says otherwise, and names
// every attempt after the first in a Retry-Attempt header unless
// WithAttemptHeader says otherwise. The result is
// meant for http.Client.Transport. New panics on an invalid option,
// naming it.
func New(base http.RoundTripper, opts ...Option) *Stack {
	if base == nil {
		base = defaultBase()
	}
	s := &Stack{}
	s.retries.Base = base
	s.retries.Budget = new(Budget) // the zero Budget has the defaults
	s.retries.AttemptHeader = defaultAttemptHeader
	s.retries.latency = new(latency.Table)
	s.bodies.Base = &s.retries
	s.keys.Base = &s.bodies
	t := target{stack: s, retries: &s.retries}
	for i, opt := range opts {
		if opt.set == nil {
			panic("saferetry: New: option " + strconv.Itoa(i) + " is the zero Option")
		}
		opt.set(&t)
	}
	if s.retries.RateLimitHold && s.retries.Budget == nil {
		panic("saferetry: WithRateLimitHold(true): the hold keeps its state in the stack's Budget, which WithBudget(nil) removed")
	}
	return s
}

// NewClient returns an *http.Client whose Transport is New(nil, opts...).
func NewClient(opts ...Option) *http.Client {
	return &http.Client{Transport: New(nil, opts...)}
}

// RoundTrip implements http.RoundTripper by sending req through the stack.
func (s *Stack) RoundTrip(req *http.Request) (*http.Response, error) {
	if s.choose != nil {
		req = withChosenOptions(req, s.choose)
	}
	return s.keys.RoundTrip(req)
}

// CloseIdleConnections closes the base transport's idle connections, as
// http.Client.CloseIdleConnections expects of its Transport.
func (s *Stack) CloseIdleConnections() { s.keys.CloseIdleConnections() }
