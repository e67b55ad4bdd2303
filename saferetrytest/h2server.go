package saferetrytest

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
)

// H2Kind is what [H2Server] does with one stream.
type H2Kind int

const (
	// H2Answer reads the request whole and answers 200 with H2Fault.Body
	// (default "ok\n"): the stream is processed. It is the zero H2Kind.
	H2Answer H2Kind = iota

	// H2Refuse answers RST_STREAM(REFUSED_STREAM) as soon as the request
	// headers arrive: the stream is not processed (RFC 9113 §8.7).
	H2Refuse

	// H2GoAway sends GOAWAY whose last stream id is the highest stream the
	// connection had accepted, which is below this one: the stream is not
	// processed (RFC 9113 §6.8). Streams already accepted on the connection
	// are still answered; later ones are ignored, without consuming the
	// script. The server keeps reading until the client closes.
	H2GoAway

	// H2Reset reads the request whole (the stream is processed) and then
	// sends RST_STREAM with H2Fault.Code (default INTERNAL_ERROR) instead
	// of an answer.
	H2Reset
)

var h2KindNames = [...]string{"H2Answer", "H2Refuse", "H2GoAway", "H2Reset"}

// String returns the constant's name.
func (k H2Kind) String() string {
	if k >= 0 && int(k) < len(h2KindNames) {
		return h2KindNames[k]
	}
	return "H2Kind(" + strconv.Itoa(int(k)) + ")"
}

// ErrCode is an HTTP/2 error code (RFC 9113 §7). The zero value is
// NO_ERROR.
type ErrCode uint32

// HTTP/2 error codes the server sends, and a client reports.
const (
	ErrCodeNo            ErrCode = 0x0
	ErrCodeProtocol      ErrCode = 0x1
	ErrCodeInternal      ErrCode = 0x2
	ErrCodeRefusedStream ErrCode = 0x7
)

// H2Fault is what the raw server does with the next streams, in the order
// their HEADERS arrive, across connections. The zero value answers one
// stream with 200.
type H2Fault struct {
	// Kind is the action; default H2Answer.
	Kind H2Kind
	// Count is how many consecutive streams meet this fault, as
	// [Fault.Count]: 0 or 1 mean one, negative means every stream from then on.
	Count int
	// Code is the error code of H2GoAway (default NO_ERROR) and H2Reset
	// (where 0 means INTERNAL_ERROR).
	Code ErrCode
	// Body is H2Answer's response body; default "ok\n". It must fit the
	// client's flow-control window (Go's client grants 4 MiB); the server
	// does not track send windows.
	Body []byte
	// Arrived, when not nil, receives one value per stream after the
	// server has sent its answer, refusal, GOAWAY or reset. The send blocks
	// that connection until it is received or the server closes.
	Arrived chan<- struct{}
}

// H2Stream is one stream the raw server received, as found in [H2Stats].
type H2Stream struct {
	Conn int    // the connection it came on, from 1 in accept order
	ID   uint32 // its stream id
	// Kind is what the server did with it (H2Answer for an ignored stream).
	Kind H2Kind
	// Ignored reports that it arrived after the server's GOAWAY on its
	// connection and was dropped unread.
	Ignored bool
	// Canceled reports that the client reset it before it was complete.
	Canceled bool
	// Processed reports that the server read the request whole and acted on
	// it (answered or, with H2Reset, reset it afterwards).
	Processed bool
	// Body is the request body received, byte for byte.
	Body []byte
}

// H2Stats is a snapshot of what the raw server received, a deep copy the
// caller owns.
type H2Stats struct {
	// Conns counts the TLS connections that negotiated h2.
	Conns int
	// Streams lists every stream whose HEADERS arrived, in arrival order.
	Streams []H2Stream
}

// Processed counts the streams the server processed.
func (st H2Stats) Processed() int {
	n := 0
	for _, s := range st.Streams {
		if s.Processed {
			n++
		}
	}
	return n
}

// H2Server is a minimal HTTP/2 server over TLS whose streams follow a
// script; see the package documentation. Create it with [NewH2Server] and stop
// it with [H2Server.Close]. Its methods are safe for concurrent use.
type H2Server struct {
	ln     net.Listener
	url    string
	pool   *x509.CertPool
	client *http.Client
	done   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	nconns  int
	h2conns int
	script  []H2Fault
	streams []H2Stream
}

// NewH2Server starts an H2Server on a loopback port with an in-memory
// self-signed certificate that [H2Server.Client] trusts. It panics if it
// cannot listen, like httptest.NewServer.
func NewH2Server() *H2Server {
	cert, err := loopbackCert()
	if err != nil {
		panic("saferetrytest: making a certificate: " + err.Error())
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"h2"},
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		panic("saferetrytest: failed to listen: " + err.Error())
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	s := &H2Server{
		ln:    ln,
		url:   "https://" + ln.Addr().String(),
		pool:  pool,
		done:  make(chan struct{}),
		conns: make(map[net.Conn]struct{}),
	}
	s.client = &http.Client{Transport: s.Transport()}
	s.wg.Add(1)
	go s.serve()
	return s
}

// URL returns the base URL, "https://127.0.0.1:port".
func (s *H2Server) URL() string { return s.url }

// Client returns a shared *http.Client that trusts the server's
// certificate and speaks HTTP/2; Close closes its idle connections.
func (s *H2Server) Client() *http.Client { return s.client }

// Transport returns a new *http.Transport with ForceAttemptHTTP2 that
// trusts the server's certificate. The caller closes its idle connections.
func (s *H2Server) Transport() *http.Transport {
	return &http.Transport{
		ForceAttemptHTTP2: true,
		TLSClientConfig:   &tls.Config{RootCAs: s.pool},
	}
}

// Script queues faults for the next streams, after any already queued.
// A stream with nothing queued is answered with 200.
func (s *H2Server) Script(faults ...H2Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script = append(s.script, faults...)
}

// Stats returns a deep copy of what the server has received so far.
func (s *H2Server) Stats() H2Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := H2Stats{Conns: s.h2conns, Streams: slices.Clone(s.streams)}
	for i := range st.Streams {
		st.Streams[i].Body = slices.Clone(st.Streams[i].Body)
	}
	return st
}

// Close stops the listener, closes every connection and waits for the
// server's goroutines to end. It is safe to call more than once.
func (s *H2Server) Close() {
	s.once.Do(func() {
		close(s.done)
		s.ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
		s.client.CloseIdleConnections()
	})
}

func (s *H2Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		select {
		case <-s.done:
			s.mu.Unlock()
			c.Close()
			return
		default:
		}
		s.nconns++
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c.(*tls.Conn))
	}
}

func (s *H2Server) next() H2Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.script) == 0 {
		return H2Fault{}
	}
	f := s.script[0]
	switch {
	case f.Count < 0:
	case f.Count > 1:
		s.script[0].Count--
	default:
		s.script = s.script[1:]
	}
	return f
}

// HTTP/2 frame types and flags (RFC 9113 §6).
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9

	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20

	clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	maxFrameSize  = 16384 // SETTINGS_MAX_FRAME_SIZE's initial value, which we never raise
)

var errProtocol = errors.New("saferetrytest: HTTP/2 protocol error")

// h2conn is one connection's state, owned by its goroutine.
type h2conn struct {
	s  *H2Server
	id int
	c  *tls.Conn
	br *bufio.Reader
	bw *bufio.Writer

	open        map[uint32]*openStream // accepted streams not yet complete
	lastID      uint32                 // highest stream id seen
	maxAccepted uint32                 // highest stream id accepted for processing
	goneAway    bool

	contID        uint32 // stream whose header block awaits CONTINUATION, 0 if none
	contEndStream bool
}

func (s *H2Server) serveConn(tc *tls.Conn) {
	defer s.wg.Done()
	defer func() {
		tc.Close()
		s.mu.Lock()
		delete(s.conns, tc)
		s.mu.Unlock()
	}()
	if err := tc.Handshake(); err != nil || tc.ConnectionState().NegotiatedProtocol != "h2" {
		return
	}
	s.mu.Lock()
	s.h2conns++
	id := s.h2conns
	s.mu.Unlock()
	c := &h2conn{
		s:    s,
		id:   id,
		c:    tc,
		br:   bufio.NewReader(tc),
		bw:   bufio.NewWriter(tc),
		open: make(map[uint32]*openStream),
	}
	_ = c.run()
}

func (c *h2conn) run() error {
	var preface [len(clientPreface)]byte
	if _, err := io.ReadFull(c.br, preface[:]); err != nil {
		return err
	}
	if string(preface[:]) != clientPreface {
		return errProtocol
	}
	c.writeFrame(frameSettings, 0, 0, nil) // server preface: default settings
	if err := c.bw.Flush(); err != nil {
		return err
	}
	var hdr [9]byte
	buf := make([]byte, maxFrameSize)
	for {
		if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
			return err
		}
		length := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		typ, flags := hdr[3], hdr[4]
		stream := binary.BigEndian.Uint32(hdr[5:]) & 0x7fffffff
		if length > maxFrameSize {
			return errProtocol
		}
		payload := buf[:length]
		if _, err := io.ReadFull(c.br, payload); err != nil {
			return err
		}
		if c.contID != 0 && (typ != frameContinuation || stream != c.contID) {
			return errProtocol
		}
		var err error
		switch typ {
		case frameHeaders:
			err = c.onHeaders(stream, flags, payload)
		case frameContinuation:
			if c.contID == 0 {
				return errProtocol
			}
			if flags&flagEndHeaders != 0 {
				c.contID = 0
				err = c.onRequestHeaders(stream, c.contEndStream)
			}
		case frameData:
			err = c.onData(stream, flags, payload)
		case frameRSTStream:
			c.onClientReset(stream)
		case frameSettings:
			if flags&flagAck == 0 {
				c.writeFrame(frameSettings, flagAck, 0, nil)
			}
		case framePing:
			if flags&flagAck == 0 && length == 8 {
				c.writeFrame(framePing, flagAck, 0, payload)
			}
		case frameGoAway:
			return c.bw.Flush()
		default:
			// WINDOW_UPDATE: the server's answers are small and it does not
			// track send windows. PRIORITY and unknown types are ignored,
			// as RFC 9113 §5.5 requires of unknown ones.
		}
		if err != nil {
			return err
		}
		if c.bw.Buffered() > 0 {
			if err := c.bw.Flush(); err != nil {
				return err
			}
		}
	}
}

func (c *h2conn) onHeaders(id uint32, flags byte, payload []byte) error {
	if id == 0 {
		return errProtocol
	}
	if _, err := unpad(flags, payload); err != nil {
		return err
	}
	if flags&flagEndHeaders == 0 {
		c.contID, c.contEndStream = id, flags&flagEndStream != 0
		return nil
	}
	return c.onRequestHeaders(id, flags&flagEndStream != 0)
}

// onRequestHeaders acts on a complete header block: trailers of an open
// stream, or a new stream.
func (c *h2conn) onRequestHeaders(id uint32, endStream bool) error {
	if i, ok := c.open[id]; ok {
		if endStream {
			return c.complete(id, i)
		}
		return nil
	}
	if id%2 == 0 || id <= c.lastID {
		return nil // not a new client stream: nothing to do
	}
	c.lastID = id
	s := c.s
	if c.goneAway {
		s.mu.Lock()
		s.streams = append(s.streams, H2Stream{Conn: c.id, ID: id, Ignored: true})
		s.mu.Unlock()
		return nil
	}
	f := s.next()
	s.mu.Lock()
	i := len(s.streams)
	s.streams = append(s.streams, H2Stream{Conn: c.id, ID: id, Kind: f.Kind})
	s.mu.Unlock()
	switch f.Kind {
	case H2Refuse:
		c.writeRST(id, ErrCodeRefusedStream)
		return c.arrived(f)
	case H2GoAway:
		c.goneAway = true
		var p [8]byte
		binary.BigEndian.PutUint32(p[:4], c.maxAccepted)
		binary.BigEndian.PutUint32(p[4:], uint32(f.Code))
		c.writeFrame(frameGoAway, 0, 0, p[:])
		return c.arrived(f)
	}
	c.maxAccepted = id
	c.open[id] = &openStream{index: i, fault: f}
	if endStream {
		return c.complete(id, c.open[id])
	}
	return nil
}

// onData records a request body fragment and grants the window back.
func (c *h2conn) onData(id uint32, flags byte, payload []byte) error {
	if id == 0 {
		return errProtocol
	}
	data, err := unpad(flags, payload)
	if err != nil {
		return err
	}
	if n := uint32(len(payload)); n > 0 {
		c.writeWindowUpdate(0, n)
	}
	st, ok := c.open[id]
	if !ok {
		return nil // refused, reset or ignored: only the connection window matters
	}
	c.s.mu.Lock()
	rec := &c.s.streams[st.index]
	rec.Body = append(rec.Body, data...)
	c.s.mu.Unlock()
	if flags&flagEndStream != 0 {
		return c.complete(id, st)
	}
	if n := uint32(len(payload)); n > 0 {
		c.writeWindowUpdate(id, n)
	}
	return nil
}

// complete acts on a stream whose request has been received whole.
func (c *h2conn) complete(id uint32, st *openStream) error {
	delete(c.open, id)
	c.s.mu.Lock()
	c.s.streams[st.index].Processed = true
	c.s.mu.Unlock()
	f := st.fault
	if f.Kind == H2Reset {
		code := f.Code
		if code == ErrCodeNo {
			code = ErrCodeInternal
		}
		c.writeRST(id, code)
		return c.arrived(f)
	}
	body := f.Body
	if body == nil {
		body = []byte("ok\n")
	}
	// HPACK (RFC 7541): ":status: 200" is static index 8, sent indexed
	// (0x88); content-length is a literal without indexing whose name is
	// static index 28. Nothing enters the dynamic table.
	block := []byte{0x88}
	block = appendHPACKInt(block, 0x00, 4, 28)
	cl := strconv.Itoa(len(body))
	block = appendHPACKInt(block, 0x00, 7, uint64(len(cl)))
	block = append(block, cl...)
	if len(body) == 0 {
		c.writeFrame(frameHeaders, flagEndHeaders|flagEndStream, id, block)
	} else {
		c.writeFrame(frameHeaders, flagEndHeaders, id, block)
		for len(body) > 0 {
			n := min(len(body), maxFrameSize)
			var fl byte
			if n == len(body) {
				fl = flagEndStream
			}
			c.writeFrame(frameData, fl, id, body[:n])
			body = body[n:]
		}
	}
	return c.arrived(f)
}

// onClientReset forgets a stream the client reset.
func (c *h2conn) onClientReset(id uint32) {
	st, ok := c.open[id]
	if !ok {
		return
	}
	delete(c.open, id)
	c.s.mu.Lock()
	c.s.streams[st.index].Canceled = true
	c.s.mu.Unlock()
}

// arrived flushes what was written and signals f.Arrived.
func (c *h2conn) arrived(f H2Fault) error {
	if f.Arrived == nil {
		return nil
	}
	if err := c.bw.Flush(); err != nil {
		return err
	}
	select {
	case f.Arrived <- struct{}{}:
		return nil
	case <-c.s.done:
		return net.ErrClosed
	}
}

func (c *h2conn) writeFrame(typ, flags byte, stream uint32, payload []byte) {
	var h [9]byte
	h[0], h[1], h[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	h[3], h[4] = typ, flags
	binary.BigEndian.PutUint32(h[5:], stream&0x7fffffff)
	c.bw.Write(h[:]) // errors surface at Flush
	c.bw.Write(payload)
}

func (c *h2conn) writeRST(id uint32, code ErrCode) {
	var p [4]byte
	binary.BigEndian.PutUint32(p[:], uint32(code))
	c.writeFrame(frameRSTStream, 0, id, p[:])
}

func (c *h2conn) writeWindowUpdate(id, n uint32) {
	var p [4]byte
	binary.BigEndian.PutUint32(p[:], n)
	c.writeFrame(frameWindowUpdate, 0, id, p[:])
}

// openStream is a stream accepted for processing whose request is not yet
// complete.
type openStream struct {
	index int // in H2Server.streams
	fault H2Fault
}

// unpad strips the padding from a DATA or HEADERS payload (what follows
// is, for HEADERS, the priority fields and the block fragment, which the
// server does not need).
func unpad(flags byte, payload []byte) ([]byte, error) {
	if flags&flagPadded == 0 {
		return payload, nil
	}
	if len(payload) < 1 || int(payload[0]) > len(payload)-1 {
		return nil, errProtocol
	}
	return payload[1 : len(payload)-int(payload[0])], nil
}

// appendHPACKInt appends v as an HPACK integer with an n-bit prefix after
// the high bits in first (RFC 7541 §5.1).
func appendHPACKInt(b []byte, first byte, n uint, v uint64) []byte {
	limit := uint64(1)<<n - 1
	if v < limit {
		return append(b, first|byte(v))
	}
	b = append(b, first|byte(limit))
	v -= limit
	for v >= 128 {
		b = append(b, byte(v&0x7f)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}
