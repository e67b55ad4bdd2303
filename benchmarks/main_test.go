package benchmarks

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a test or benchmark leaves a goroutine behind:
// every contender's transport closes its idle connections when done.
// hedgedhttp runs its attempts on a package-wide pool of goroutines, each
// of which waits 10 s for more work before it exits: by design, not a
// leak, so its idle workers are ignored.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/cristalhq/hedgedhttp.runInPool.func1"))
}
