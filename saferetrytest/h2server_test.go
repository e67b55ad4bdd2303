package saferetrytest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
)

func newH2(t *testing.T) *H2Server {
	t.Helper()
	s := NewH2Server()
	t.Cleanup(s.Close)
	return s
}

// Bodies for the raw server's requests: a rewindable one (GetBody set by
// http.NewRequest) and one net/http cannot send twice.
func rewindable(s string) func() io.Reader { return func() io.Reader { return strings.NewReader(s) } }
func oneShot(s string) func() io.Reader {
	return func() io.Reader { return io.NopCloser(strings.NewReader(s)) }
}

// TestH2Server runs Go's HTTP/2 client against each scripted stream fault
// and records how many streams one RoundTrip sends and what it returns.
func TestH2Server(t *testing.T) {
	big := strings.Repeat("0123456789", 10_000) // 100 kB: more than the initial 64 KiB window
	type stream struct {
		conn      int
		id        uint32
		kind      H2Kind
		processed bool
	}
	tests := []struct {
		name    string
		script  []H2Fault
		body    func() io.Reader // nil: GET
		want    string           // response body; "" when an error is expected
		wantErr func(error) bool
		streams []stream
	}{
		{
			name: "answer GET",
			want: "ok\n", streams: []stream{{1, 1, H2Answer, true}},
		},
		{
			name:   "answer POST larger than a window",
			script: []H2Fault{{Body: []byte("custom")}},
			body:   rewindable(big), want: "custom",
			streams: []stream{{1, 1, H2Answer, true}},
		},
		{
			name:   "refused once: retried on the same connection",
			script: []H2Fault{{Kind: H2Refuse}},
			body:   rewindable("pay"), want: "ok\n",
			streams: []stream{{1, 1, H2Refuse, false}, {1, 3, H2Answer, true}},
		},
		{
			name:   "refused once, body not rewindable: untyped error",
			script: []H2Fault{{Kind: H2Refuse}},
			body:   oneShot("pay"), wantErr: notStreamError,
			streams: []stream{{1, 1, H2Refuse, false}},
		},
		{
			name:   "GOAWAY once: retried on a new connection",
			script: []H2Fault{{Kind: H2GoAway}},
			body:   rewindable("pay"), want: "ok\n",
			streams: []stream{{1, 1, H2GoAway, false}, {2, 1, H2Answer, true}},
		},
		{
			name:   "GOAWAY once, body not rewindable: untyped error",
			script: []H2Fault{{Kind: H2GoAway}},
			body:   oneShot("pay"), wantErr: notStreamError,
			streams: []stream{{1, 1, H2GoAway, false}},
		},
		{
			name:    "GOAWAY PROTOCOL_ERROR on stream 1: not retried",
			script:  []H2Fault{{Kind: H2GoAway, Code: ErrCodeProtocol}},
			wantErr: notStreamError,
			streams: []stream{{1, 1, H2GoAway, false}},
		},
		{
			name:   "RST_STREAM PROTOCOL_ERROR after processing: retried, processed twice",
			script: []H2Fault{{Kind: H2Reset, Code: ErrCodeProtocol}},
			body:   rewindable("pay"), want: "ok\n",
			streams: []stream{{1, 1, H2Reset, true}, {2, 1, H2Answer, true}},
		},
		{
			name:    "RST_STREAM INTERNAL_ERROR: not retried",
			script:  []H2Fault{{Kind: H2Reset}},
			body:    rewindable("pay"),
			wantErr: isStreamError(ErrCodeInternal),
			streams: []stream{{1, 1, H2Reset, true}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newH2(t)
			s.Script(tc.script...)
			c := newClient(t, s.Transport())
			method, sent := "GET", ""
			var body io.Reader
			if tc.body != nil {
				method, body = "POST", tc.body()
				b, _ := io.ReadAll(tc.body())
				sent = string(b)
			}
			req, err := http.NewRequestWithContext(t.Context(), method, s.URL()+"/", body)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Do(req)
			if tc.wantErr != nil {
				if err == nil {
					resp.Body.Close()
					t.Fatal("got a response; want an error")
				}
				if !tc.wantErr(err) {
					t.Fatalf("unexpected error: %v", err)
				}
			} else {
				got := wantStatus(t, resp, err, 200)
				if resp.ProtoMajor != 2 || string(got) != tc.want {
					t.Fatalf("got %s %q; want HTTP/2 %q", resp.Proto, got, tc.want)
				}
			}
			st := s.Stats()
			var streams []stream
			for _, x := range st.Streams {
				streams = append(streams, stream{x.Conn, x.ID, x.Kind, x.Processed})
				if x.Processed && string(x.Body) != sent {
					t.Errorf("stream %d/%d body: %d bytes; want the %d sent", x.Conn, x.ID, len(x.Body), len(sent))
				}
			}
			if !slices.Equal(streams, tc.streams) {
				t.Fatalf("streams = %+v; want %+v", streams, tc.streams)
			}
		})
	}
}

func notStreamError(err error) bool {
	var se streamError
	return !errors.As(err, &se)
}

func isStreamError(code ErrCode) func(error) bool {
	return func(err error) bool {
		var se streamError
		return errors.As(err, &se) && se.Code == code
	}
}

// TestH2Forever shows that Go's client keeps retrying a stream that is
// always refused (after a pause), always met with GOAWAY or always reset
// with PROTOCOL_ERROR (at once, on a new connection each time) until the
// request's context ends.
func TestH2Forever(t *testing.T) {
	tests := []struct {
		name    string
		kind    H2Kind
		code    ErrCode
		streams int // streams to see before canceling
	}{
		// The first retry is immediate; the second waits 1 s, so canceling
		// after two streams ends the RoundTrip in its pause.
		{"REFUSED_STREAM", H2Refuse, 0, 2},
		{"GOAWAY", H2GoAway, ErrCodeNo, 5},
		// RST_STREAM(PROTOCOL_ERROR) after the server processed the stream:
		// resent at once on a new connection each time.
		{"PROTOCOL_ERROR after processing", H2Reset, ErrCodeProtocol, 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newH2(t)
			arrived := make(chan struct{})
			s.Script(H2Fault{Kind: tc.kind, Code: tc.code, Count: -1, Arrived: arrived})
			c := newClient(t, s.Transport())
			ctx, cancel := context.WithCancel(t.Context())
			errc := make(chan error, 1)
			go func() {
				req, _ := http.NewRequestWithContext(ctx, "POST", s.URL()+"/", strings.NewReader("pay"))
				_, err := c.Do(req)
				errc <- err
			}()
			for range tc.streams {
				waitArrived(t, arrived, errc)
			}
			cancel()
			if err := <-errc; !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v; want context.Canceled", err)
			}
			st := s.Stats()
			if len(st.Streams) < tc.streams {
				t.Fatalf("%d streams; want at least %d", len(st.Streams), tc.streams)
			}
			switch tc.kind {
			case H2Refuse:
				if len(st.Streams) != 2 || st.Conns != 1 || st.Processed() != 0 {
					t.Fatalf("%d streams on %d conns, %d processed; want 2 on 1, none processed", len(st.Streams), st.Conns, st.Processed())
				}
			case H2GoAway:
				if st.Conns < tc.streams || st.Processed() != 0 {
					t.Fatalf("%d conns, %d processed; want one conn per stream, none processed", st.Conns, st.Processed())
				}
			case H2Reset:
				if st.Conns < tc.streams || st.Processed() < tc.streams {
					t.Fatalf("%d conns, %d processed; want one conn per stream, every one processed", st.Conns, st.Processed())
				}
			}
		})
	}
}

// rawConn is a hand-driven HTTP/2 client connection for what Go's client
// does not send on demand: PING, padding, CONTINUATION.
type rawConn struct {
	t  *testing.T
	c  *tls.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, s *H2Server) *rawConn {
	t.Helper()
	cfg := s.Transport().TLSClientConfig
	cfg.NextProtos = []string{"h2"}
	c, err := tls.Dial("tcp", strings.TrimPrefix(s.URL(), "https://"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &rawConn{t: t, c: c, br: bufio.NewReader(c)}
	if _, err := io.WriteString(c, clientPreface); err != nil {
		t.Fatal(err)
	}
	r.write(frameSettings, 0, 0, nil)
	return r
}

func (r *rawConn) write(typ, flags byte, stream uint32, payload []byte) {
	r.t.Helper()
	var h [9]byte
	h[0], h[1], h[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	h[3], h[4] = typ, flags
	binary.BigEndian.PutUint32(h[5:], stream)
	if _, err := r.c.Write(append(h[:], payload...)); err != nil {
		r.t.Fatal(err)
	}
}

type rawFrame struct {
	typ, flags byte
	stream     uint32
	payload    []byte
}

func (r *rawConn) read() rawFrame {
	r.t.Helper()
	var h [9]byte
	if _, err := io.ReadFull(r.br, h[:]); err != nil {
		r.t.Fatal(err)
	}
	f := rawFrame{typ: h[3], flags: h[4], stream: binary.BigEndian.Uint32(h[5:])}
	f.payload = make([]byte, int(h[0])<<16|int(h[1])<<8|int(h[2]))
	if _, err := io.ReadFull(r.br, f.payload); err != nil {
		r.t.Fatal(err)
	}
	return f
}

// readUntil reads frames until one of type typ, skipping SETTINGS and
// WINDOW_UPDATE.
func (r *rawConn) readUntil(typ byte) rawFrame {
	r.t.Helper()
	for {
		f := r.read()
		if f.typ == typ {
			return f
		}
		if f.typ != frameSettings && f.typ != frameWindowUpdate {
			r.t.Fatalf("got frame type %d; want %d", f.typ, typ)
		}
	}
}

func TestH2RawFrames(t *testing.T) {
	t.Run("SETTINGS and PING are acknowledged", func(t *testing.T) {
		s := newH2(t)
		r := dialRaw(t, s)
		if f := r.read(); f.typ != frameSettings || f.flags&flagAck != 0 {
			t.Fatalf("first frame %+v; want the server's SETTINGS", f)
		}
		if f := r.read(); f.typ != frameSettings || f.flags&flagAck == 0 {
			t.Fatalf("second frame %+v; want SETTINGS ACK", f)
		}
		r.write(framePing, 0, 0, []byte("12345678"))
		if f := r.read(); f.typ != framePing || f.flags&flagAck == 0 || string(f.payload) != "12345678" {
			t.Fatalf("got %+v; want PING ACK 12345678", f)
		}
	})
	t.Run("padding, priority and CONTINUATION", func(t *testing.T) {
		s := newH2(t)
		r := dialRaw(t, s)
		// HEADERS padded with priority, block continued; the server does not
		// decode HPACK, so the block's bytes do not matter.
		headers := append([]byte{2}, 0, 0, 0, 0, 16) // pad length, priority
		headers = append(headers, 0x82, 0, 0)        // block fragment, 2 bytes of padding
		r.write(frameHeaders, flagPadded|flagPriority, 1, headers)
		r.write(frameContinuation, flagEndHeaders, 1, []byte{0x87})
		r.write(frameData, flagPadded, 1, append([]byte{3}, "abc\x00\x00\x00"...))
		r.write(frameData, flagEndStream, 1, []byte("def"))
		h := r.readUntil(frameHeaders)
		if h.stream != 1 || h.flags&flagEndHeaders == 0 || !bytes.HasPrefix(h.payload, []byte{0x88}) {
			t.Fatalf("response HEADERS %+v; want :status 200 on stream 1", h)
		}
		d := r.readUntil(frameData)
		if d.stream != 1 || d.flags&flagEndStream == 0 || string(d.payload) != "ok\n" {
			t.Fatalf("response DATA %+v; want \"ok\\n\" ending stream 1", d)
		}
		st := s.Stats()
		if len(st.Streams) != 1 || string(st.Streams[0].Body) != "abcdef" || !st.Streams[0].Processed {
			t.Fatalf("streams %+v; want one processed with body abcdef", st.Streams)
		}
	})
	t.Run("GOAWAY spares accepted streams and ignores later ones", func(t *testing.T) {
		s := newH2(t)
		s.Script(H2Fault{}, H2Fault{Kind: H2GoAway})
		r := dialRaw(t, s)
		r.write(frameHeaders, flagEndHeaders, 1, []byte{0x83}) // accepted, body to come
		r.write(frameHeaders, flagEndHeaders|flagEndStream, 3, []byte{0x82})
		g := r.readUntil(frameGoAway)
		if last := binary.BigEndian.Uint32(g.payload); last != 1 {
			t.Fatalf("GOAWAY last stream id %d; want 1", last)
		}
		r.write(frameHeaders, flagEndHeaders|flagEndStream, 5, []byte{0x82})
		r.write(frameData, flagEndStream, 1, []byte("late body"))
		if d := r.readUntil(frameHeaders); d.stream != 1 {
			t.Fatalf("answer on stream %d; want 1", d.stream)
		}
		if d := r.readUntil(frameData); d.stream != 1 || string(d.payload) != "ok\n" {
			t.Fatalf("DATA %+v; want ok on stream 1", d)
		}
		got := s.Stats().Streams
		want := []H2Stream{
			{Conn: 1, ID: 1, Kind: H2Answer, Processed: true, Body: []byte("late body")},
			{Conn: 1, ID: 3, Kind: H2GoAway},
			{Conn: 1, ID: 5, Ignored: true},
		}
		if len(got) != len(want) {
			t.Fatalf("streams %+v; want %+v", got, want)
		}
		for i := range want {
			g, w := got[i], want[i]
			if g.Conn != w.Conn || g.ID != w.ID || g.Kind != w.Kind || g.Processed != w.Processed ||
				g.Ignored != w.Ignored || !bytes.Equal(g.Body, w.Body) {
				t.Errorf("stream %d: %+v; want %+v", i, g, w)
			}
		}
	})
}
