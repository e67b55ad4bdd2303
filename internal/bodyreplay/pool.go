package bodyreplay

import (
	"math/bits"
	"sync"
)

// Buffers are pooled by power-of-two capacity, from 4 KiB to 4 MiB, so that
// steady traffic reuses them and a small body does not pin a large buffer.
// Larger buffers (MaxBodyBytes above 4 MiB) are left to the garbage
// collector: a pool holding a rare huge buffer would keep it forever.
const (
	minShift = 12
	maxShift = 22
)

var pools [maxShift - minShift + 1]sync.Pool // of *[]byte with len 0

// getBuffer returns an empty buffer with room for at least n bytes.
func getBuffer(n int) *[]byte {
	shift := max(bits.Len(uint(n-1)), minShift)
	if shift > maxShift {
		b := make([]byte, 0, n)
		return &b
	}
	if b, _ := pools[shift-minShift].Get().(*[]byte); b != nil {
		return b
	}
	b := make([]byte, 0, 1<<shift)
	return &b
}

// putBuffer returns b to its pool if it came from one.
func putBuffer(b *[]byte) {
	c := cap(*b)
	if c < 1<<minShift || c > 1<<maxShift || c&(c-1) != 0 {
		return
	}
	*b = (*b)[:0]
	pools[bits.Len(uint(c))-1-minShift].Put(b)
}
