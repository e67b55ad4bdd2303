package faultserver_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"syscall"

	"github.com/saferetry/saferetry/internal/faultserver"
)

// The classic duplicated payment, defused by an idempotency key: the
// server commits the charge, the connection is reset before the answer,
// and the retry with the same key gets the stored answer instead of a
// second charge.
func Example() {
	s := faultserver.New()
	defer s.Close()
	s.Script("/charge", faultserver.Fault{Kind: faultserver.ResetAfterBody})

	charge := func() {
		req, _ := http.NewRequest("POST", s.URL()+"/charge", strings.NewReader(`{"amount":10}`))
		req.Header.Set("Idempotency-Key", "order-42")
		resp, err := s.Client().Do(req)
		if err != nil {
			fmt.Println("connection reset:", errors.Is(err, syscall.ECONNRESET))
			return
		}
		resp.Body.Close()
		fmt.Println(resp.Status, "replayed:", resp.Header.Get("Idempotent-Replayed"))
	}
	charge()
	charge()
	fmt.Println("charges committed:", s.Stats().Paths["/charge"].Commits)
	// Output:
	// connection reset: true
	// 200 OK replayed: true
	// charges committed: 1
}
