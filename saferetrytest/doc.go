// Package saferetrytest is a fault-injecting HTTP server for tests that
// must prove what an HTTP client does when the network or the server
// misbehaves: which requests it sends again, how long it waits, and
// whether a write it could not confirm was applied once or twice.
//
// A retrying client is only as good as the failures it was tested
// against, and the failures that matter are hard to produce on demand with
// net/http/httptest alone: a connection reset after the server committed a
// payment, a 429 whose Retry-After is an RFC 850 date, a body cut halfway,
// an HTTP/2 stream the server refused. This package produces each of them
// deterministically, for one request chosen by the test, and records what
// the server received, so a test can assert "charged exactly once" rather
// than "no error". saferetry's own fault matrix is built on it; it works
// with any client that takes an *http.Client or an http.RoundTripper.
//
// Related tools inject faults elsewhere. Polly.Testing (.NET) inspects how
// a resilience pipeline is composed; Simmy, Polly's chaos strategies,
// injects exceptions, fake results and latency inside the client's own
// pipeline at a configured rate; Envoy's fault filter injects delays,
// aborts with a status and response rate limits at a proxy, for a
// percentage of requests or on request headers. This package sits on the
// wire instead, where a real transport meets the fault, and is scripted
// per request rather than by rate, so the same test fails or passes the
// same way every run. It also plays the part those tools leave out: a
// server that deduplicates writes by idempotency key and says what it did.
//
// # The server
//
// [New] starts a [Server] on 127.0.0.1: HTTP/1.1 by default, HTTPS with
// [WithTLS], HTTP/2 with [WithHTTP2] (over TLS with both, in cleartext
// with prior knowledge without TLS). [Server.Script] queues faults for the
// next requests to a path; a path with nothing queued serves normally.
// Serving normally means: a safe method (GET, HEAD, OPTIONS, TRACE) gets
// 200 "ok"; any other method commits a side effect (counted per path,
// numbered in the X-Commit response header) and gets 200.
//
// A write carrying an Idempotency-Key or X-Idempotency-Key header (or one
// named with [WithKeyHeader]) is deduplicated as
// draft-ietf-httpapi-idempotency-key-header describes: the first request
// with a key commits and its response is stored; a request with the same
// key while the first is still in flight gets 409 Conflict; one with the
// same key and the same method, path and body gets the stored response
// replayed (with Idempotent-Replayed: true); one with the same key and a
// different payload gets 422 Unprocessable Content. Writes without a key
// commit every time, which is what lets a test prove a duplicate.
//
// [Server.Stats] and [Server.Wait] report, per path, every request
// received (its body byte for byte, its key, the fault it met, what the
// server did with it) and the side effects committed.
//
// # Faults
//
// A [Fault] is one of the [Kind] values: answer a status with any headers
// ([Burst] for a run of them, [RetryAfter] for a 429 or 503 with a
// Retry-After, [RetryAfterCases] for that header in every form RFC 9110
// allows and some it does not), hang, reset before the body is read,
// reset after the write was committed (the response is lost, the effect is
// not), fail before the commit while a key is in flight (a 503 or a reset;
// nothing applied, the key freed), reset or truncate the response body
// partway, or send the body slowly. Two faults act below HTTP: [Server.ResetConns] resets the next
// accepted connections before a byte of the request is read (over TLS,
// during the handshake, so the client has provably written nothing of its
// request), and [RefusedURL] gives an address on which nothing listens.
// Over HTTP/2 a connection cannot be reset for one request without failing
// the others, so the reset kinds send RST_STREAM(INTERNAL_ERROR) on the
// stream instead; see [Kind].
//
// No fault depends on timing, apart from SlowBody's optional Delay. A
// fault that pauses waits on a channel the test controls ([Fault.Release],
// [Fault.Step]) and says it got there ([Fault.Arrived]); it also ends when
// the request's context does or when [Server.Close] runs, which aborts
// every paused request and returns only once every handler has, so no
// goroutine outlives the server. A test whose client gave up on a request
// calls [Server.Wait] before asserting on it: the request may still be in
// a handler, or on the wire.
//
// # The raw HTTP/2 server
//
// Go's HTTP/2 server cannot be told to refuse one stream or to send GOAWAY
// on demand, so [H2Server] is a minimal HTTP/2 server over TLS written for
// this package (RFC 9113, just enough for Go's client): it reads the
// preface, exchanges SETTINGS, reads HEADERS, CONTINUATION and DATA without
// decoding HPACK, answers PING, grants flow-control window for what it
// receives, and per stream, in arrival order, follows its script: answer
// 200, refuse with RST_STREAM(REFUSED_STREAM), send GOAWAY whose last stream
// id is below the stream (so the stream was provably not processed), or
// reset the stream after reading it whole. It records every stream it
// received and which it processed.
//
// # What Go's HTTP/2 client does with these faults
//
// Observed with go1.26 against [H2Server] (see h2_bundle.go,
// http2Transport.RoundTripOpt and http2canRetryError). A retrying client
// must know it, because net/http retries these faults itself, below any
// RoundTripper a user installs, so one RoundTrip may send a request
// several times:
//
//   - RST_STREAM(REFUSED_STREAM): retried on the same connection, at once
//     the first time, then after 1 s, 2 s, 4 s, 8 s, 16 s and 32 s (plus up
//     to 10% jitter): 8 streams and about 64 s for one RoundTrip. It then
//     returns the unexported http2StreamError{StreamID, Code, Cause}
//     (REFUSED_STREAM = 7, Cause "received from peer"). errors.As copies it
//     into any error type (it needs an Error method) that is a struct with
//     the fields StreamID uint32, Code (a uint32 type such as [ErrCode])
//     and Cause error: the way to read HTTP/2 error codes without
//     golang.org/x/net. If the request's context ends during a pause,
//     RoundTrip returns the context's error at once.
//   - GOAWAY with NO_ERROR and a last stream id below the stream: the stream
//     fails with an internal errClientConnGotGoAway and http.Transport
//     dials a new connection and sends again, at once and without limit:
//     against a server that answers every connection with GOAWAY, one
//     RoundTrip opened about 2,400 connections in 2 s, until its context
//     ended.
//   - GOAWAY with an error code, on stream 1 of a connection: not retried;
//     RoundTrip returns a plain error ("http2: Transport received GOAWAY
//     from server ErrCode:PROTOCOL_ERROR") with no type to match.
//   - RST_STREAM(PROTOCOL_ERROR), even after the server processed the
//     stream: retried at once on a new connection, without limit
//     (golang/go#47635). A POST whose every stream was reset so was
//     committed over a thousand times in one second. RST_STREAM with other
//     codes (INTERNAL_ERROR, which Go's own server sends when a handler
//     aborts) is not retried: RoundTrip or the body's Read returns the
//     http2StreamError.
//   - Each retry needs a body that can be sent again: none, http.NoBody, or
//     Request.GetBody (set by http.NewRequest for bytes and strings
//     readers). Otherwise RoundTrip returns, after one stream, an untyped
//     error: "http2: Transport: cannot retry err [...] after Request.Body
//     was written; define Request.GetBody to avoid this error".
//
// Go's HTTP/1 transport also retries by itself: on a reused keep-alive
// connection, when the failure came before the first response byte, for a
// request it deems replayable (GET, HEAD, OPTIONS, TRACE, or any method
// with an Idempotency-Key or X-Idempotency-Key header, body rewindable).
// Tests that must see one fault reach the client use fresh connections
// ([Server.Transport] gives each test its own pool). Over TLS, a response
// that races the cancellation of its request's context can still be
// returned, with a nil error. Over HTTP/2 in cleartext, a connection reset
// by [Server.ResetConns] fails the request with ECONNRESET or, about as
// often, an untyped "http2: client conn could not be established".
package saferetrytest
