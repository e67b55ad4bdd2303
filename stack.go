package saferetry

import (
	"fmt"
	"net/http"
)

// Stack is the standard saferetry stack, outermost first: KeyInjector,
// BodyCache, Transport, then the base transport. Build it with New; its
// layers are exposed for inspection and must not be changed once in use.
// Safe for concurrent use.
type Stack struct {
	Keys    *KeyInjector
	Bodies  *BodyCache
	Retries *Transport
}

var _ http.RoundTripper = (*Stack)(nil)

// New assembles the standard stack over base. A nil base means a fresh
// pooled transport from go-cleanhttp (never http.DefaultTransport, whose
// state every package in the process shares), with HTTP/2 health checks
// that close a connection that stopped answering: pinged after 30s
// without a frame, closed if the ping goes unanswered for 15s or a write
// makes no progress for 30s. The result is meant for
// http.Client.Transport. New panics on an invalid or nil option, naming it.
func New(base http.RoundTripper, opts ...Option) *Stack {
	cfg := defaultConfig()
	for i, opt := range opts {
		if opt == nil {
			panic(fmt.Sprintf("saferetry: New: option %d is nil", i))
		}
		opt(&cfg)
	}
	if base == nil {
		base = defaultBase()
	}
	retries := &Transport{
		Base:           base,
		MaxRetries:     cfg.maxRetries,
		Backoff:        cfg.backoff,
		Strategy:       cfg.strategy,
		Budget:         cfg.budget,
		MaxRetryAfter:  cfg.maxRetryAfter,
		AttemptTimeout: cfg.attemptTimeout,
		KeyHeader:      cfg.keyHeader,
		Logger:         cfg.logger,
		OnRetry:        cfg.onRetry,
	}
	if cfg.maxRetries == 0 {
		retries.MaxRetries = -1
	}
	bodies := &BodyCache{Base: retries, MaxBodyBytes: cfg.maxBodyBytes}
	if cfg.maxBodyBytes == 0 {
		bodies.MaxBodyBytes = -1
	}
	keys := &KeyInjector{
		Base:    bodies,
		Header:  cfg.keyHeader,
		Methods: cfg.keyMethods,
		NewKey:  cfg.keyFunc,
		Quoted:  cfg.quotedKeys,
		Store:   cfg.keyStore,
	}
	return &Stack{Keys: keys, Bodies: bodies, Retries: retries}
}

// NewClient returns an *http.Client whose Transport is New(nil, opts...).
func NewClient(opts ...Option) *http.Client {
	return &http.Client{Transport: New(nil, opts...)}
}

// RoundTrip implements http.RoundTripper by sending req through the stack.
func (s *Stack) RoundTrip(req *http.Request) (*http.Response, error) {
	return s.Keys.RoundTrip(req)
}

// CloseIdleConnections closes the base transport's idle connections, as
// http.Client.CloseIdleConnections expects of its Transport.
func (s *Stack) CloseIdleConnections() { s.Keys.CloseIdleConnections() }
