package integration

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any test leaves a goroutine behind. The SDKs
// exercised here (oauth2, the OpenTelemetry SDK with a synchronous span
// recorder, go-github, stripe-go without telemetry) start no background
// goroutines of their own, so nothing needs to be ignored.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
