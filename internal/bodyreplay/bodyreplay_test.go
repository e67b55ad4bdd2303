package bodyreplay

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSized(t *testing.T) {
	path := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(path, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	atOffset := func(off int64) *os.File {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		return f
	}
	pr, pw := io.Pipe()
	defer pr.Close()
	defer pw.Close()
	tests := []struct {
		name    string
		body    io.Reader
		off, n  int64
		sizable bool
	}{
		{"regular file", atOffset(0), 0, 10, true},
		{"file at an offset", atOffset(4), 4, 6, true},
		{"file read to the end", atOffset(10), 0, 0, false},
		{"file in a NopCloser", io.NopCloser(atOffset(2)), 2, 8, true},
		{"bytes.Reader", bytes.NewReader([]byte("abc")), 0, 3, true},
		{"strings.Reader in a NopCloser", io.NopCloser(strings.NewReader("abcd")), 0, 4, true},
		{"pipe", pr, 0, 0, false},
		{"plain reader", io.LimitReader(strings.NewReader("x"), 1), 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, off, n, ok := Sized(tt.body)
			if ok != tt.sizable || (ok && (off != tt.off || n != tt.n)) {
				t.Fatalf("Sized = off %d, n %d, ok %v; want %d, %d, %v", off, n, ok, tt.off, tt.n, tt.sizable)
			}
		})
	}
}
