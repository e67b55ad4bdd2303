package bodyreplay

import "testing"

func TestBufferPoolSizes(t *testing.T) {
	for _, n := range []int{1, 4096, 4097, 1 << 20, 4 << 20, 4<<20 + 1} {
		b := getBuffer(n)
		if cap(*b) < n || len(*b) != 0 {
			t.Fatalf("getBuffer(%d): len %d cap %d", n, len(*b), cap(*b))
		}
		putBuffer(b)
	}
}
