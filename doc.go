// Package saferetry lets any Go HTTP client retry safely.
//
// Retries are necessary and dangerous. A client that never retries turns
// every transient 503 into an outage of its own; a client that retries
// naively charges cards twice, multiplies the load on an upstream that is
// already failing, and leaks connections. saferetry is a stack of
// http.RoundTripper layers that retries only what is safe to retry, as
// gently as the server asks, within a budget:
//
//	http.Client
//	  └─ KeyInjector   one Idempotency-Key per logical request, reused by every retry
//	      └─ BodyCache  the body made replayable, without copying where possible
//	          └─ Transport  classify, back off with jitter, honour Retry-After, spend the budget
//	              └─ base   go-cleanhttp's pooled transport, or yours
//
// New assembles the stack; NewClient wraps it in an *http.Client. Each layer
// is an exported type usable on its own.
//
// The guarantees:
//
//   - A transient failure heals quietly: retried with capped exponential
//     backoff and jitter, after the server's Retry-After when it sends one.
//   - A write is never duplicated: a request that is neither idempotent nor
//     keyed is retried only when it provably never reached the server.
//   - A struggling upstream is not pushed over: the retry budget keeps
//     retries to about 10% of requests per host.
//   - Nothing is lost or leaked: every attempt sends a byte-identical body,
//     the caller's request is never modified, every discarded response is
//     drained and closed, and when retries run out the caller gets the last
//     real response, or a *RetryError that unwraps to the last cause.
//
// Attempts and Stopped report, for a response, how many attempts were made
// and why retrying stopped. WithRequestOptions changes the retry options of
// one request (fewer retries for an interactive call, none for a health
// check); WithHook and WithLogger report every retry and every refusal.
//
// # Layout
//
// The files follow the stack, outermost first:
//
//	stack.go, options.go, overrides.go   New, the options, per-request overrides
//	keyinjector.go                       the key layer; keyinjector_operation.go and
//	                                     keyinjector_store.go: durable keys of named operations
//	bodycache.go                         the body layer (internal/bodyreplay does the replaying)
//	transport.go                         the retry layer; transport_run.go is one logical
//	                                     request's loop, with transport_attempt.go (one attempt,
//	                                     its timeout), transport_wait.go, transport_drain.go,
//	                                     transport_record.go (Attempts, Stopped) and
//	                                     transport_report.go (the hook and the logger)
//	base.go                              the default base transport
//
// then the policy the retry layer asks, and what supports it:
//
//	strategy.go, strategy_errors.go,     what is retried: the classification table, typed
//	strategy_status.go                   error classification, what statuses say
//	backoff.go                           how long to wait
//	budget.go                            how much retrying a host can afford
//	ratelimithold.go                     holding first attempts to a host out of quota
//	errors.go, headers.go                stop reasons and errors; header helpers
//
// # Go's own retries
//
// net/http's Transport already resends some requests by itself, inside
// what saferetry sees as one attempt: a request that failed on a reused
// idle connection, and HTTP/2 requests the server refused (REFUSED_STREAM,
// or GOAWAY before the stream was processed), provided the body can be
// rewound through GetBody. It resends an unkeyed POST only when nothing of
// it was written; but it treats requests carrying Idempotency-Key or
// X-Idempotency-Key as replayable, like GET, and may resend those after
// the server processed them, trusting the server to deduplicate by key.
// Those resends are not counted by Attempts nor against the budget.
package saferetry
