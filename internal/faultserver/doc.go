// Package faultserver is a loopback HTTP server that injects a scripted fault into each request.
//
// The retry layers of saferetry are only as good as the failures they were
// tested against, and the failures that matter (a connection reset after a
// payment was committed, a 429 whose Retry-After is an RFC 850 date, an
// HTTP/2 stream the server refused) are hard to produce on demand with
// net/http/httptest alone. This package produces them deterministically, so
// that the fault-matrix tests and the demo can say exactly which request
// met which fault and what the server saw.
//
// # The HTTP/1.1 and HTTP/2 server
//
// [New] starts a [Server] on 127.0.0.1 (plain HTTP/1.1 by default; TLS with
// [WithTLS]; HTTP/2 over TLS with [WithHTTP2]). [Server.Script] queues faults
// for the next requests to a path; a path with nothing queued serves
// normally. Serving normally means: a safe method (GET, HEAD, OPTIONS, TRACE)
// gets 200 "ok"; any other method commits a side effect (counted per path,
// numbered in the X-Commit response header) and gets 200. A write carrying
// an Idempotency-Key (or X-Idempotency-Key) header is deduplicated as
// draft-ietf-httpapi-idempotency-key-header describes: the first request
// with a key commits and its response is stored; a request with the same
// key while the first is still in flight gets 409; one with the same key and
// the same method, path and body gets the stored response replayed (with
// Idempotent-Replayed: true); one with the same key and a different payload
// gets 422. Writes without a key commit every time, which is what lets a
// test prove a duplicate.
//
// [Server.Stats] reports, per path, every request received (its body byte
// for byte, its key, the fault it met, what the server did with it) and the
// side effects committed, so a test can assert "charged exactly once".
//
// The faults are the [Kind] values, plus two that act below HTTP:
// [Server.ResetConns] resets the next accepted connections before a byte of
// the request is read (over TLS, during the handshake, so the client has
// provably written nothing), and [RefusedURL] gives an address on which
// nothing listens. Over HTTP/2 a connection cannot be reset for one request
// without failing the others, so the reset kinds send RST_STREAM
// (INTERNAL_ERROR) on the stream instead; see [Kind].
//
// No fault depends on timing, apart from SlowBody's optional Delay (for
// demos). A fault that pauses waits on a channel the caller controls
// ([Fault.Release], [Fault.Step]) and tells the caller it got there
// ([Fault.Arrived]); it also ends when the request's context does or when
// [Server.Close] runs, which aborts every paused request and returns only
// once every handler has, so no goroutine outlives the server.
// [Server.WaitIdle] lets a test wait for the handlers of requests its
// client gave up on.
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
// http2Transport.RoundTripOpt and http2canRetryError); the retry layer
// must know it, because net/http retries these faults itself, below any
// RoundTripper a user installs:
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
// ([Server.Transport] gives each test its own pool). And over TLS, a
// response that races the cancellation of its request's context can still
// be returned, with a nil error.
package faultserver
