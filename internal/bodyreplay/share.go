package bodyreplay

import "io"

// Shareable reports whether several attempts may read replays of body at
// the same time, each from the start, as hedged requests do. A body this
// package replays lazily from a stream is not (yet) shared safely; every
// other replayable body (a section of a file, a caller's GetBody) is.
func Shareable(body io.Reader) bool {
	_, lazy := body.(*lazyReader)
	return !lazy
}
