package benchmarks

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a test or benchmark leaves a goroutine behind:
// every contender's transport closes its idle connections when done.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
