package saferetry

import (
	"context"
	"net/http"
	"strconv"
)

// requestOverrides are the options that apply to the requests sent with
// one context, on top of the stack's: an interactive call with fewer
// retries, a health check with none, one endpoint without key injection.
type requestOverrides struct {
	loop          []Option // options of the retry loop, outermost first
	keyMethods    []string // set by WithKeyMethods
	keyMethodsSet bool
}

type overridesKey struct{}

// WithRequestOptions returns a copy of ctx whose requests use opts on top
// of the stack's options: the options of the retry loop (WithMaxRetries,
// WithBackoff, WithJitter, WithStrategy, WithAttemptTimeout,
// WithMaxRetryAfter) and WithKeyMethods. Nested calls merge, the inner
// one winning. An option that configures state the whole stack shares
// (a logger, a hook, a budget, a key store, the key header or function,
// the body cap) panics here, naming it, as does the zero Option.
//
// A context that carries no overrides costs a request nothing.
func WithRequestOptions(ctx context.Context, opts ...Option) context.Context {
	return context.WithValue(ctx, overridesKey{}, mergeOverrides(overridesFrom(ctx), "WithRequestOptions", opts))
}

// WithRequestOptionsFunc sets a function that chooses options for each
// request from the request itself (its host, method or path), for
// requests whose context the caller does not build: an SDK's. The options
// it returns are checked as WithRequestOptions checks them, and the
// context's own overrides win over them. It runs once per request, on the
// request's goroutine, and may return nil.
func WithRequestOptionsFunc(choose func(*http.Request) []Option) Option {
	if choose == nil {
		invalid("WithRequestOptionsFunc", "nil", "function must not be nil")
	}
	return stackOption("WithRequestOptionsFunc", func(s *Stack) { s.choose = choose })
}

// withChosenOptions returns req with the options choose picked for it
// applied beneath the overrides its context already carries.
func withChosenOptions(req *http.Request, choose func(*http.Request) []Option) *http.Request {
	opts := choose(req)
	if len(opts) == 0 {
		return req
	}
	chosen := mergeOverrides(nil, "WithRequestOptionsFunc", opts)
	if own := overridesFrom(req.Context()); own != nil {
		chosen = mergeOverrides(chosen, "WithRequestOptions", own.loop)
		if own.keyMethodsSet {
			chosen.keyMethods, chosen.keyMethodsSet = own.keyMethods, true
		}
	}
	return req.WithContext(context.WithValue(req.Context(), overridesKey{}, chosen))
}

// mergeOverrides returns outer with opts applied on top, checking that
// each may apply per request. outer is not modified.
func mergeOverrides(outer *requestOverrides, caller string, opts []Option) *requestOverrides {
	merged := &requestOverrides{}
	if outer != nil {
		*merged = *outer
		merged.loop = append([]Option(nil), outer.loop...)
	}
	t := target{request: merged}
	for i, o := range opts {
		switch {
		case o.set == nil:
			panic("saferetry: " + caller + ": option " + strconv.Itoa(i) + " is the zero Option")
		case o.scope == scopeStack:
			panic("saferetry: " + caller + ": " + o.name + " configures the whole stack and cannot apply to one request")
		case o.scope == scopeKeys:
			o.set(&t)
		default:
			merged.loop = append(merged.loop, o)
		}
	}
	return merged
}

func overridesFrom(ctx context.Context) *requestOverrides {
	ro, _ := ctx.Value(overridesKey{}).(*requestOverrides)
	return ro
}

// withOverrides returns t itself when ctx overrides none of its options,
// and otherwise a copy of t with the overrides applied.
func (t *Transport) withOverrides(ctx context.Context) *Transport {
	ro := overridesFrom(ctx)
	if ro == nil || len(ro.loop) == 0 {
		return t
	}
	c := *t
	tgt := target{retries: &c}
	for _, o := range ro.loop {
		o.set(&tgt)
	}
	return &c
}
