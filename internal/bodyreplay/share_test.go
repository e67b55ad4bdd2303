package bodyreplay

import (
	"io"
	"strings"
	"testing"
)

func TestShareable(t *testing.T) {
	lazy := func(body string, limit, size int64) *Lazy {
		l := new(Lazy)
		l.Init(io.NopCloser(strings.NewReader(body)), limit, size)
		t.Cleanup(l.End)
		return l
	}
	unknownSmall := lazy("hello", 10, 0)
	readWhole := lazy("hello", 10, 0)
	r := readWhole.First()
	io.ReadAll(r)
	r.Close()
	tests := []struct {
		name string
		body io.Reader
		want bool
	}{
		{"not a lazy body", strings.NewReader("x"), true},
		{"announced within the limit", lazy("hello", 10, 5).First(), true},
		{"announced over the limit", lazy("hello world", 10, 11).First(), false},
		{"unknown size, not read yet", unknownSmall.First(), false},
		{"unknown size, read whole within the limit", readWhole.First(), true},
		{"no buffering", lazy("hello", -1, 5).First(), false},
	}
	for _, tt := range tests {
		if got := Shareable(tt.body); got != tt.want {
			t.Errorf("%s: Shareable = %v, want %v", tt.name, got, tt.want)
		}
		if c, ok := tt.body.(io.Closer); ok {
			c.Close()
		}
	}
}
