package bodyreplay

import "io"

// Shareable reports whether several attempts may read replays of body at
// the same time, each from the start, as hedged requests do, and each get
// all of it: a section of a file or a caller's GetBody always; a stream
// replayed lazily only once it is known to fit within the limit (its size
// was announced within it, or it was read to its end within it). A hedge
// of a larger stream could be left behind once the bytes it still needs
// are no longer kept.
func Shareable(body io.Reader) bool {
	r, lazy := body.(*lazyReader)
	return !lazy || r.l.fits()
}

// fits reports whether every byte of the body will be kept.
func (l *Lazy) fits() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.committed || l.limit < 0:
		return false
	case l.err == io.EOF:
		return true
	}
	return l.hint > 0 && int64(l.hint) <= l.limit
}

// Retire ends a discarded attempt's reading of body when body replays a
// stream: the attempt's write loop may still be sending it to a server
// that answered early, and every byte it takes from the stream is one
// more that must be kept for the next attempt, which could push the body
// over the limit under it. Other bodies are left to their transport.
func Retire(body io.Reader) {
	if r, lazy := body.(*lazyReader); lazy {
		r.Close()
	}
}
