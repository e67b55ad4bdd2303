package saferetryotel

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a test leaves a goroutine behind. The
// OpenTelemetry SDK pieces the tests use (a synchronous in-memory span
// exporter, a manual metric reader) start none.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
