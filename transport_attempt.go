package saferetry

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// send performs one attempt, bounded by timeout until its response
// headers arrive when timeout > 0.
//
// A plain context.WithTimeout around the attempt would also cut off the
// reading of a slow body (a streaming LLM answer, say), so the timer is
// stopped once headers arrive, and the attempt's context is released only
// when the caller closes the body or reads it to the end.
func send(base http.RoundTripper, req *http.Request, timeout time.Duration) (*http.Response, error) {
	if timeout <= 0 {
		return base.RoundTrip(req)
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	timer := time.AfterFunc(timeout, func() { cancel(ErrAttemptTimeout) })
	attempt := req.WithContext(ctx)
	resp, err := base.RoundTrip(attempt)
	timer.Stop()
	if err != nil {
		cancel(nil)
		if context.Cause(ctx) == ErrAttemptTimeout && req.Context().Err() == nil {
			return nil, fmt.Errorf("%w after %v", ErrAttemptTimeout, timeout)
		}
		return nil, err
	}
	// A response that arrived is handed on, even when the timer fired as
	// it came: its status is real (a 200 for a write that was applied)
	// and must not be hidden behind a timeout, though its body may then
	// fail to read.
	if resp.Request == attempt {
		// The attempt's context ends with its body; a follow-up request
		// built from resp.Request.Context() must not inherit that end.
		resp.Request = req
	}
	if resp.Body == nil {
		cancel(nil) // nothing to read: http.Client substitutes NoBody
		return resp, nil
	}
	resp.Body = releaseOnDone(resp.Body, func() { cancel(nil) })
	return resp, nil
}

// releaseOnDone wraps body so release runs exactly once, on EOF or Close.
// A body that is also an io.Writer (a 101 Switching Protocols connection)
// stays one.
func releaseOnDone(body io.ReadCloser, release func()) io.ReadCloser {
	rb := &releasingBody{ReadCloser: body, release: release}
	if w, ok := body.(io.Writer); ok {
		return &releasingReadWriteBody{releasingBody: rb, w: w}
	}
	return rb
}

type releasingBody struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (b *releasingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.once.Do(b.release)
	}
	return n, err
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.release)
	return err
}

type releasingReadWriteBody struct {
	*releasingBody
	w io.Writer
}

func (b *releasingReadWriteBody) Write(p []byte) (int, error) { return b.w.Write(p) }
