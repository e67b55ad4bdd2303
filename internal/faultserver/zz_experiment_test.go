package faultserver

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

func TestExperiment(t *testing.T) {
	if os.Getenv("FS_EXPERIMENT") == "" {
		t.Skip()
	}
	run := func(name string, faults []H2Fault, body func() io.Reader, timeout time.Duration) {
		s := NewH2()
		defer s.Close()
		s.Script(faults...)
		tr := s.Transport()
		defer tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		method := "GET"
		var b io.Reader
		if body != nil {
			method = "POST"
			b = body()
		}
		req, _ := http.NewRequestWithContext(ctx, method, s.URL()+"/", b)
		start := time.Now()
		resp, err := (&http.Client{Transport: tr}).Do(req)
		el := time.Since(start)
		if resp != nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		var m mirror
		var as bool
		if err != nil {
			as = errorsAs(err, &m)
		}
		st := s.Stats()
		fmt.Printf("== %s: elapsed %v status=%v err=%v (%T) mirror=%v %+v\n", name, el.Round(time.Millisecond), resp != nil && resp.StatusCode == 200, err, unwrapAll(err), as, m)
		for _, x := range st.Streams {
			fmt.Printf("   conn %d id %d kind %v ignored %v processed %v body %d\n", x.Conn, x.ID, x.Kind, x.Ignored, x.Processed, len(x.Body))
		}
	}
	nr := func() io.Reader { return io.NopCloser(strings.NewReader("payload")) }
	br := func() io.Reader { return bytes.NewReader([]byte("payload")) }
	run("refuse once GET", []H2Fault{{Kind: H2Refuse}}, nil, 10*time.Second)
	run("refuse once POST nonrewind", []H2Fault{{Kind: H2Refuse}}, nr, 10*time.Second)
	run("refuse once POST rewind", []H2Fault{{Kind: H2Refuse}}, br, 10*time.Second)
	run("goaway once GET", []H2Fault{{Kind: H2GoAway}}, nil, 10*time.Second)
	run("goaway once POST nonrewind", []H2Fault{{Kind: H2GoAway}}, nr, 10*time.Second)
	run("goaway PROTOCOL once GET", []H2Fault{{Kind: H2GoAway, Code: ErrCodeProtocol}}, nil, 10*time.Second)
	run("reset PROTOCOL once POST", []H2Fault{{Kind: H2Reset, Code: ErrCodeProtocol}}, br, 10*time.Second)
	run("reset INTERNAL once POST", []H2Fault{{Kind: H2Reset}}, br, 10*time.Second)
	run("goaway forever 2s", []H2Fault{{Kind: H2GoAway, Count: -1}}, nil, 2*time.Second)
	if os.Getenv("FS_LONG") != "" {
		run("refuse forever", []H2Fault{{Kind: H2Refuse, Count: -1}}, nil, 120*time.Second)
		run("refuse forever POST rewind", []H2Fault{{Kind: H2Refuse, Count: -1}}, br, 120*time.Second)
	}
}

type mirror struct {
	StreamID uint32
	Code     ErrCode
	Cause    error
}

func (mirror) Error() string { return "mirror" }
