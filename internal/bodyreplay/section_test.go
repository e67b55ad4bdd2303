package bodyreplay

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A reader dropped unread (the GOAWAY case) and read only after the
// caller's file was closed fails with ErrNotReplayable, and does not read
// the closed file: its Read would otherwise fail with os.ErrClosed, or
// read another file that took the descriptor.
func TestSectionReaderReadAfterFileClosed(t *testing.T) {
	data := payload(5000)
	path := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s := new(Section)
	s.Init(f, f, 0, int64(len(data)))
	first := s.First()
	readAll(t, first, data)
	first.Close()
	dropped := mustNext(t, s)
	sent := mustNext(t, s)
	readAll(t, sent, data)
	sent.Close()
	s.End()
	if err := f.Close(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("the caller's file was not closed at End (Close: %v)", err)
	}
	n, err := dropped.Read(make([]byte, 100))
	if n != 0 || !errors.Is(err, ErrNotReplayable) || errors.Is(err, os.ErrClosed) {
		t.Errorf("dropped reader: %d bytes, %v; want ErrNotReplayable", n, err)
	}
}
