package saferetry

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/saferetry/saferetry/internal/overload"
)

// The budget benchmarks read the monotonic clock as Budget does: it is
// part of what a caller pays. Each op of the Deposit+Withdraw benchmarks is
// one logical request: one deposit and one withdrawal; Deposit+record adds
// the record of its attempt's outcome, which the retry loop now makes for
// every attempt.

const budgetBenchHost = "api.example.com:443"

func BenchmarkBudget(b *testing.B) {
	b.Run("Deposit", func(b *testing.B) {
		bud := NewBudget(0.1)
		bud.deposit(budgetBenchHost)
		b.ReportAllocs()
		for b.Loop() {
			bud.deposit(budgetBenchHost)
		}
	})
	b.Run("Deposit+Withdraw granted", func(b *testing.B) {
		// A ratio of 1 and a deposit per op keep the budget in credit, so
		// every withdrawal spends (compare-and-swap).
		bud := NewBudget(1)
		bud.deposit(budgetBenchHost)
		b.ReportAllocs()
		for b.Loop() {
			bud.deposit(budgetBenchHost)
			bud.withdraw(budgetBenchHost, overload.Answered)
		}
	})
	b.Run("Withdraw refused", func(b *testing.B) {
		bud := NewBudget(0.1)
		for bud.withdraw(budgetBenchHost, overload.Answered) {
		}
		b.ReportAllocs()
		for b.Loop() {
			bud.withdraw(budgetBenchHost, overload.Answered)
		}
	})
	b.Run("Deposit+Withdraw", func(b *testing.B) {
		// The defaults: once the allowance is spent, 1 withdrawal in 10
		// is granted.
		bud := NewBudget(0.1)
		bud.deposit(budgetBenchHost)
		b.ReportAllocs()
		for b.Loop() {
			bud.deposit(budgetBenchHost)
			bud.withdraw(budgetBenchHost, overload.Answered)
		}
	})
	b.Run("Deposit+record", func(b *testing.B) {
		// A logical request that succeeds at once: what every request
		// pays.
		bud := NewBudget(0.1)
		bud.deposit(budgetBenchHost)
		b.ReportAllocs()
		for b.Loop() {
			bud.deposit(budgetBenchHost)
			bud.record(budgetBenchHost, true)
		}
	})
	b.Run("Deposit+admit+record throttled", func(b *testing.B) {
		// The same with throttling on (K = 2): one more lookup.
		bud := NewBudget(0.1)
		bud.deposit(budgetBenchHost)
		b.ReportAllocs()
		for b.Loop() {
			bud.admit(budgetBenchHost, 2)
			bud.deposit(budgetBenchHost)
			bud.record(budgetBenchHost, true)
		}
	})
	b.Run("Nil", func(b *testing.B) {
		var bud *Budget
		b.ReportAllocs()
		for b.Loop() {
			bud.deposit(budgetBenchHost)
			bud.withdraw(budgetBenchHost, overload.Answered)
		}
	})
}

// BenchmarkBudgetParallel measures deposit+withdraw from GOMAXPROCS
// goroutines, on one host (every goroutine contends for the same state)
// and spread over many hosts (the shared map is read-mostly; hosts rarely
// collide).
func BenchmarkBudgetParallel(b *testing.B) {
	hosts := make([]string, 1024)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("host-%d.example:443", i)
	}
	b.Run("one host", func(b *testing.B) {
		bud := NewBudget(0.1)
		bud.deposit(budgetBenchHost)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				bud.deposit(budgetBenchHost)
				bud.withdraw(budgetBenchHost, overload.Answered)
			}
		})
	})
	b.Run("many hosts", func(b *testing.B) {
		bud := NewBudget(0.1)
		for _, h := range hosts {
			bud.deposit(h)
		}
		var seed atomic.Uint32
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			// Each goroutine walks the hosts from its own starting point.
			i := int(seed.Add(257)) % len(hosts)
			for pb.Next() {
				h := hosts[i]
				bud.deposit(h)
				bud.withdraw(h, overload.Answered)
				i = (i + 1) % len(hosts)
			}
		})
	})
}
