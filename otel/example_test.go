package saferetryotel_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"

	"github.com/saferetry/saferetry"
	saferetryotel "github.com/saferetry/saferetry/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// The one line: the stack saferetry.New would build, its attempts traced
// and its retries counted with the global providers.
func ExampleNew() {
	client := &http.Client{Transport: saferetryotel.New(nil, saferetry.WithMaxRetries(2))}
	defer client.CloseIdleConnections()
	_ = client // client.Get(...)
}

// With providers of your own: each attempt is a client span under the
// caller's span, the resends numbered, and the retry an event on the
// caller's span.
func ExampleConfig_New() {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()

	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(context.Background())

	client := &http.Client{Transport: saferetryotel.Config{TracerProvider: tp}.New(nil, saferetry.WithBackoff(0, 0))}
	defer client.CloseIdleConnections()

	ctx, caller := tp.Tracer("app").Start(context.Background(), "caller")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/things?api_key=s3cr3t", nil)
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	caller.End()

	for _, s := range spans.GetSpans() {
		fmt.Print(s.Name)
		for _, kv := range s.Attributes {
			switch kv.Key {
			case "http.request.resend_count", "http.response.status_code":
				fmt.Printf(" %s=%s", kv.Key, kv.Value.Emit())
			case "url.full":
				fmt.Printf(" url.full=...%s", kv.Value.AsString()[len(srv.URL):])
			}
		}
		for _, ev := range s.Events {
			fmt.Printf(" event=%s", ev.Name)
		}
		fmt.Println()
	}
	// Output:
	// GET url.full=.../things?api_key=REDACTED http.response.status_code=503
	// GET url.full=.../things?api_key=REDACTED http.request.resend_count=1 http.response.status_code=200
	// caller event=saferetry.retry
}
