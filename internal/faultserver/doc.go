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
// Nothing in this package sleeps to wait for an event. A fault that pauses
// waits on a channel the caller controls ([Fault.Release], [Fault.Step]), on
// the request's context, or on [Server.Close], which releases every paused
// request, so no goroutine outlives the server.
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
// # What Go's HTTP/2 client does with these faults (go1.26, h2_bundle.go)
//
// The retry layer must know this, because net/http retries some of these
// faults itself, below any RoundTripper a user installs:
//
//   - RST_STREAM(REFUSED_STREAM): http2Transport.RoundTripOpt retries on the
//     same connection, at once the first time, then after 1 s, 2 s, 4 s, 8 s,
//     16 s and 32 s (+ up to 10% jitter): up to 8 streams for one RoundTrip,
//     about 63 s. It then returns the unexported http2StreamError{StreamID,
//     Code: REFUSED_STREAM (7), Cause: "received from peer"}, which
//     errors.As converts into any struct with the fields StreamID uint32,
//     Code uint32 (or a uint32-based type) and Cause error. If the request's
//     context ends during a pause, RoundTrip returns context.Canceled (or
//     DeadlineExceeded) at once.
//   - RST_STREAM(PROTOCOL_ERROR) from the server is retried the same way
//     (golang/go#47635), even if the server had processed the request: a
//     retried POST is then committed twice. Other codes (INTERNAL_ERROR,
//     what Go's own server sends when a handler aborts) are not retried.
//   - GOAWAY NO_ERROR with a last stream id below the stream: the stream
//     fails with errClientConnGotGoAway, the h2 layer gives up on the
//     connection and http.Transport dials a new one and sends the request
//     again, with no pause and no limit: a server that answers every new
//     connection with GOAWAY keeps one RoundTrip dialling until its context
//     ends.
//   - GOAWAY with an error code on stream 1 of a connection is not retried:
//     RoundTrip returns a plain error ("http2: Transport received GOAWAY
//     from server ErrCode:...") with no type to match.
//   - Either retry needs a body that can be sent again: none, http.NoBody,
//     or Request.GetBody (set by http.NewRequest for bytes and strings
//     readers). Otherwise RoundTrip returns an untyped error ("http2:
//     Transport: cannot retry err [...] after Request.Body was written;
//     define Request.GetBody to avoid this error") after one stream.
//
// Go's HTTP/1 transport also retries by itself: on a reused keep-alive
// connection, when the failure came before the first response byte, for a
// request it deems replayable (GET, HEAD, OPTIONS, TRACE, or any method
// with an Idempotency-Key or X-Idempotency-Key header, body rewindable).
// Tests that must see one fault reach the client use fresh connections.
package faultserver
