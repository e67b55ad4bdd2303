package saferetry

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"syscall"
)

// errClass is what a transport error proves about a request's fate.
type errClass int

const (
	// errUnknown: the request may or may not have reached the server.
	errUnknown errClass = iota
	// errNotConnected: no connection was made, so nothing was sent.
	errNotConnected
	// errRefusedStream: an HTTP/2 server refused the stream before
	// processing it (RFC 9113 §8.7), so the request is safe to resend.
	errRefusedStream
	// errPermanent: sending the same request again cannot succeed.
	errPermanent
	// errCanceled: the caller's context is done.
	errCanceled
)

// h2StreamError mirrors the shape of net/http's bundled HTTP/2 stream
// error. net/http gives that unexported type an As method that fills any
// struct with the same field names and convertible types (h2_error.go; it
// exists so golang.org/x/net/http2.StreamError works with errors.As), which
// lets us read the RST_STREAM code without matching error text.
type h2StreamError struct {
	StreamID uint32
	Code     uint32
	Cause    error
}

func (e h2StreamError) Error() string { return "http2 stream error" }

// h2RefusedStream is the RST_STREAM code REFUSED_STREAM (RFC 9113 §7).
const h2RefusedStream = 0x7

// classifyError says what err, returned for req, proves. It uses only typed
// errors (errors.Is and errors.As); where net/http exposes no type, the
// answer is errUnknown and the caller decides from what the trace saw.
func classifyError(req *http.Request, err error) errClass {
	if errors.Is(err, ErrAttemptTimeout) {
		return errUnknown
	}
	if req.Context().Err() != nil {
		// The caller's context is done: whatever the error says (net/http
		// reports context.Cause, which may be any error), it ends the run.
		return errCanceled
	}
	if isCertificateError(err) || invalidRequest(req) {
		return errPermanent
	}
	if dnsErr, ok := findType[*net.DNSError](err); ok {
		if dnsErr.IsNotFound {
			return errPermanent
		}
		return errNotConnected
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return errNotConnected
	}
	if opErr, ok := findType[*net.OpError](err); ok && opErr.Op == "dial" {
		return errNotConnected
	}
	var se h2StreamError
	if errors.As(err, &se) && se.Code == h2RefusedStream {
		return errRefusedStream
	}
	return errUnknown
}

// isCertificateError reports TLS verification failures: the peer's
// identity is wrong, and asking again will not change it.
func isCertificateError(err error) bool {
	return hasType[*tls.CertificateVerificationError](err) ||
		hasType[x509.UnknownAuthorityError](err) ||
		hasType[x509.HostnameError](err) ||
		hasType[x509.CertificateInvalidError](err) ||
		hasType[x509.SystemRootsError](err) ||
		hasType[tls.RecordHeaderError](err)
}

// findType returns the first error of type T in err's tree, as errors.As
// does for types without an As method, but without the heap-allocated
// target errors.As needs: classifying an error allocates nothing.
func findType[T error](err error) (T, bool) {
	for err != nil {
		if t, ok := err.(T); ok {
			return t, true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if t, ok := findType[T](e); ok {
					return t, true
				}
			}
			return *new(T), false
		default:
			return *new(T), false
		}
	}
	return *new(T), false
}

func hasType[T error](err error) bool {
	_, ok := findType[T](err)
	return ok
}

// invalidRequest reports a request that no transport could send: no URL
// or host, a scheme other than http or https, or a header that is not
// valid HTTP. net/http rejects these with untyped errors, so they are
// recognised from the request itself; it runs only on the error path.
func invalidRequest(req *http.Request) bool {
	u := req.URL
	if u == nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return true
	}
	if !validMethod(req.Method) {
		return true
	}
	for name, values := range req.Header {
		if !validHeaderName(name) {
			return true
		}
		for _, v := range values {
			if !validHeaderValue(v) {
				return true
			}
		}
	}
	return false
}
