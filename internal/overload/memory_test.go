//go:build !race

package overload

import (
	"fmt"
	"runtime"
	"testing"
)

// TestTableMemoryPerHost measures what a tracked host costs, with 200,000
// hosts: the map entry, the name and the Host.
func TestTableMemoryPerHost(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 200,000 hosts")
	}
	const n = 200_000
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("hook-%06d.customer.example:443", i) // 30 bytes
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tb := newTable()
	for _, h := range names {
		tb.Deposit(h, 0)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perHost := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%d hosts: %.0f bytes per host (names of 30 bytes included)", tb.Len(), perHost)
	if perHost > 400 {
		t.Errorf("%.0f bytes per host, want under 400", perHost)
	}
	runtime.KeepAlive(tb)
}
