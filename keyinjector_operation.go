package saferetry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// An operation is a logical write the caller names, such as "webhook/4711"
// or "charge/order-1001", so that its idempotency key can outlive the
// process that first sent it. A daemon that crashes after a charge reached
// the server but before the answer came back must send the same key when
// it tries again, or the server cannot tell the retry from a second charge.
//
// KeyInjector asks its KeyStore for the key of a named operation instead of
// making one up, and the store remembers it, durably for the SQLite and
// Redis stores of the github.com/saferetry/saferetry/keystore module,
// before the first byte of the request is sent.

// operationKey is the context key of an operation's name.
type operationKey struct{}

// WithOperation returns a copy of ctx that names the logical operation
// performed by requests sent with it, for example "webhook/4711". A keyed
// request (POST or PATCH by default) with a named operation gets its
// idempotency key from the KeyInjector's KeyStore: the same key every time
// the operation is sent, in this process or, with a durable store, after a
// restart, until the operation finishes.
//
// The name identifies one operation across processes: derive it from the
// caller's own durable identifiers (an order id, an event id), never from
// anything random. The empty name names nothing: requests are keyed as if
// no operation were named.
func WithOperation(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, operationKey{}, name)
}

// operationFrom returns the operation named in ctx by WithOperation, and
// whether one is.
func operationFrom(ctx context.Context) (string, bool) {
	name, _ := ctx.Value(operationKey{}).(string)
	return name, name != ""
}

// ErrFingerprintMismatch is returned, wrapped in an *OperationError, for a
// request whose operation was begun with another method, URL or body: one
// name must never cover two different writes (the IETF draft answers a
// key reused with another payload with 422). Nothing was sent.
var ErrFingerprintMismatch = errors.New("saferetry: operation reused with a different request")

// ErrOperationDone is returned, wrapped in an *OperationError, for a
// request whose operation already reached a final outcome: the server
// answered it with a 2xx, a 303 or a definitive 4xx. Nothing was sent. Sending it
// again under a new key could repeat a write that succeeded; to perform
// the same write once more on purpose, name a new operation.
var ErrOperationDone = errors.New("saferetry: operation already completed")

// OperationError is the error KeyInjector returns, before sending
// anything, when a named operation cannot be sent: its KeyStore failed or
// refused it (errors.Is matches ErrFingerprintMismatch, ErrOperationDone
// or ErrKeyStoreFull), or its body cannot be fingerprinted (errors.Is
// matches ErrBodyNotReplayable).
type OperationError struct {
	Operation string // the operation's name
	Err       error  // why it was not sent
}

// Error implements error.
func (e *OperationError) Error() string {
	return fmt.Sprintf("saferetry: operation %q: %s", e.Operation, strings.TrimPrefix(errString(e.Err), "saferetry: "))
}

// Unwrap returns the underlying error.
func (e *OperationError) Unwrap() error { return e.Err }

// Fingerprint identifies the request a named operation stands for, so that
// a store can refuse to give the operation's key to a different request.
// It holds digests rather than the URL and body themselves: every byte of
// them counts (a URL may carry bytes that are not UTF-8, which a store
// encoding text could not keep), and no secret they carry (a token some
// APIs take in the query string) is written to a store. It is comparable
// with ==.
type Fingerprint struct {
	// Method is the request's method ("GET" when empty), a token of RFC
	// 9110 (net/http sends no other).
	Method string
	// URLSHA256 is the SHA-256 digest of the request's URL with any
	// password redacted (url.URL.Redacted), so that a request differing
	// only in its password is the same request.
	URLSHA256 [sha256.Size]byte
	// BodySHA256 is the SHA-256 digest of the request's body (of no bytes
	// when it has none).
	BodySHA256 [sha256.Size]byte
}

// fingerprintDigestPrefix introduces each digest in a fingerprint's text.
const fingerprintDigestPrefix = "sha256:"

// fingerprintDigestText is the length of one digest in a fingerprint's
// text, its prefix included.
const fingerprintDigestText = len(fingerprintDigestPrefix) + 2*sha256.Size

// String returns the fingerprint's text form,
// "METHOD sha256:URLHEX sha256:BODYHEX": ASCII when the method is a token.
func (f Fingerprint) String() string {
	b := make([]byte, 0, len(f.Method)+2*(1+fingerprintDigestText))
	b = append(b, f.Method...)
	for _, digest := range [...]*[sha256.Size]byte{&f.URLSHA256, &f.BodySHA256} {
		b = append(b, ' ')
		b = append(b, fingerprintDigestPrefix...)
		b = hex.AppendEncode(b, digest[:])
	}
	return string(b)
}

// MarshalText implements encoding.TextMarshaler with the String form, the
// form stores persist. It fails if the method is not a token, which the
// text could not hold unambiguously.
func (f Fingerprint) MarshalText() ([]byte, error) {
	if !validHeaderName(f.Method) {
		return nil, fmt.Errorf("saferetry: fingerprint method %q is not a token", f.Method)
	}
	return []byte(f.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler; it parses what
// MarshalText wrote.
func (f *Fingerprint) UnmarshalText(text []byte) error {
	method, rest, _ := strings.Cut(string(text), " ")
	urlDigest, bodyDigest, _ := strings.Cut(rest, " ")
	var got Fingerprint
	if !validHeaderName(method) || !parseDigest(&got.URLSHA256, urlDigest) || !parseDigest(&got.BodySHA256, bodyDigest) {
		return fmt.Errorf("saferetry: malformed fingerprint %q", text)
	}
	got.Method = method
	*f = got
	return nil
}

// parseDigest decodes "sha256:HEX" into sum, and reports whether it could.
func parseDigest(sum *[sha256.Size]byte, text string) bool {
	digest, ok := strings.CutPrefix(text, fingerprintDigestPrefix)
	if !ok || len(digest) != 2*sha256.Size {
		return false
	}
	_, err := hex.Decode(sum[:], []byte(digest))
	return err == nil
}

// emptyBodySHA256 is the digest of no bytes.
var emptyBodySHA256 = sha256.Sum256(nil)

// errOperationBody explains why a named operation's body was refused.
var errOperationBody = fmt.Errorf("%w: a named operation's body is fingerprinted before anything is sent, "+
	"so the request needs GetBody (http.NewRequest sets it for *bytes.Buffer, *bytes.Reader and *strings.Reader bodies)",
	ErrBodyNotReplayable)

// hashBuffers holds the buffers that hash bodies whose reader has no
// WriteTo method.
var hashBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// fingerprintOf computes req's fingerprint without consuming or copying
// req.Body: the digest is read from a fresh GetBody copy, streamed through
// the hash. A body without GetBody cannot be hashed before it is sent
// without buffering it whole, so it is refused.
//
// A request a client made by following a redirect (307 and 308 keep the
// method and the body) is fingerprinted with the first request's URL: it
// is the same operation, and carries the same key.
func fingerprintOf(req *http.Request) (Fingerprint, error) {
	first := req
	for first.Response != nil && first.Response.Request != nil {
		first = first.Response.Request
	}
	fp := Fingerprint{Method: req.Method}
	if fp.Method == "" {
		fp.Method = http.MethodGet
	}
	var url string
	if first.URL != nil {
		url = first.URL.Redacted()
	}
	fp.URLSHA256 = sha256.Sum256([]byte(url))
	if req.Body == nil || req.Body == http.NoBody {
		fp.BodySHA256 = emptyBodySHA256
		return fp, nil
	}
	if req.GetBody == nil {
		return fp, errOperationBody
	}
	body, err := req.GetBody()
	if err != nil {
		return fp, fmt.Errorf("saferetry: reading a copy of the body to fingerprint it: %w", err)
	}
	if body == nil {
		body = http.NoBody
	}
	defer body.Close()
	h := sha256.New()
	if wt, ok := body.(io.WriterTo); ok {
		_, err = wt.WriteTo(h) // bytes.Reader, strings.Reader: no buffer at all
	} else {
		buf := hashBuffers.Get().(*[]byte)
		_, err = io.CopyBuffer(h, onlyReader{body}, *buf)
		hashBuffers.Put(buf)
	}
	if err != nil {
		return fp, fmt.Errorf("saferetry: reading a copy of the body to fingerprint it: %w", err)
	}
	h.Sum(fp.BodySHA256[:0])
	return fp, nil
}

// onlyReader hides every method but Read, so io.CopyBuffer uses the
// buffer it is given.
type onlyReader struct{ io.Reader }

// finalStatus reports whether a response ends its operation: a success,
// a 303 See Other (RFC 9110 §15.4.4: the write was accepted, its result is
// at another URI, fetched with a GET that needs no key), or a client error
// that sending again cannot change. 408, 409 (the same key still in
// progress), 429 and 413 with a Retry-After ask the client to come back,
// and every other status (1xx, the other 3xx, 5xx) leaves the outcome
// open, so those operations stay pending: a client following a 307 or 308
// sends the same write again, with the same key.
func finalStatus(resp *http.Response) bool {
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300, code == http.StatusSeeOther:
		return true
	case code < 400 || code >= 500:
		return false
	}
	return !askedToComeBack(resp)
}

// OperationRecord is what a KeyStore keeps about one named operation, and
// what KeyStore.Pending lists.
type OperationRecord struct {
	Operation   string      // the operation's name
	Key         string      // its idempotency key, as first recorded
	Fingerprint Fingerprint // the request it was begun with
	Created     time.Time   // when it was first recorded
	Status      int         // 0 while pending; the final status once finished
}

// Done reports whether the operation reached a final outcome.
func (r OperationRecord) Finished() bool { return r.Status != 0 }

// Resume decides a Begin for an operation the store already records,
// for KeyStore implementations: it returns the recorded key when fp
// matches and the operation is pending, an error wrapping
// ErrFingerprintMismatch when fp differs (whatever the state), and one
// wrapping ErrOperationDone when the operation is done.
func (r OperationRecord) Resume(fp Fingerprint) (string, error) {
	switch {
	case r.Fingerprint != fp:
		return "", mismatch(r.Fingerprint, fp)
	case r.Finished():
		return "", fmt.Errorf("%w with status %d", ErrOperationDone, r.Status)
	}
	return r.Key, nil
}

// mismatch describes how two fingerprints differ, without the digests.
func mismatch(recorded, got Fingerprint) error {
	var what []string
	if recorded.Method != got.Method {
		what = append(what, fmt.Sprintf("method %s, now %s", recorded.Method, got.Method))
	}
	if recorded.URLSHA256 != got.URLSHA256 {
		what = append(what, "a different URL")
	}
	if recorded.BodySHA256 != got.BodySHA256 {
		what = append(what, "a different body")
	}
	return fmt.Errorf("%w: it was begun with %s", ErrFingerprintMismatch, strings.Join(what, "; "))
}
