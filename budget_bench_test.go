package saferetry

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// The budget benchmarks use the default clock (time.Now) unless their name
// says "fixed clock": the clock is read once per call and is part of what
// a caller pays. Each op of the Deposit+Withdraw benchmarks is one logical
// request: one Deposit and one Withdraw.

const budgetBenchHost = "api.example.com:443"

func BenchmarkBudget(b *testing.B) {
	b.Run("Deposit", func(b *testing.B) {
		bud := NewBudget()
		bud.Deposit(budgetBenchHost)
		b.ReportAllocs()
		for b.Loop() {
			bud.Deposit(budgetBenchHost)
		}
	})
	b.Run("Deposit+Withdraw granted", func(b *testing.B) {
		// A ratio of 1 and a deposit per op keep the budget in credit, so
		// every Withdraw spends (compare-and-swap plus slot update).
		bud := NewBudget(BudgetRatio(1))
		bud.Deposit(budgetBenchHost)
		b.ReportAllocs()
		for b.Loop() {
			bud.Deposit(budgetBenchHost)
			bud.Withdraw(budgetBenchHost)
		}
	})
	b.Run("Withdraw refused", func(b *testing.B) {
		bud := NewBudget()
		budgetDrain(bud, budgetBenchHost)
		b.ReportAllocs()
		for b.Loop() {
			bud.Withdraw(budgetBenchHost)
		}
	})
	b.Run("Deposit+Withdraw", func(b *testing.B) {
		// The defaults: once the reserve is spent, 1 Withdraw in 10 is
		// granted.
		bud := NewBudget()
		bud.Deposit(budgetBenchHost)
		b.ReportAllocs()
		for b.Loop() {
			bud.Deposit(budgetBenchHost)
			bud.Withdraw(budgetBenchHost)
		}
	})
	b.Run("Deposit+Withdraw fixed clock", func(b *testing.B) {
		now := time.Now()
		bud := NewBudget(BudgetClock(func() time.Time { return now }))
		bud.Deposit(budgetBenchHost)
		b.ReportAllocs()
		for b.Loop() {
			bud.Deposit(budgetBenchHost)
			bud.Withdraw(budgetBenchHost)
		}
	})
	b.Run("Nil", func(b *testing.B) {
		var bud *Budget
		b.ReportAllocs()
		for b.Loop() {
			bud.Deposit(budgetBenchHost)
			bud.Withdraw(budgetBenchHost)
		}
	})
}

// BenchmarkBudgetParallel measures Deposit+Withdraw from GOMAXPROCS
// goroutines, on one host (every goroutine contends for the same bucket)
// and spread over many hosts (the shared map is read-mostly; buckets
// rarely collide).
func BenchmarkBudgetParallel(b *testing.B) {
	hosts := make([]string, 1024)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("host-%d.example:443", i)
	}
	b.Run("one host", func(b *testing.B) {
		bud := NewBudget()
		bud.Deposit(budgetBenchHost)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				bud.Deposit(budgetBenchHost)
				bud.Withdraw(budgetBenchHost)
			}
		})
	})
	b.Run("many hosts", func(b *testing.B) {
		bud := NewBudget()
		for _, h := range hosts {
			bud.Deposit(h)
		}
		var seed atomic.Uint32
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			// Each goroutine walks the hosts from its own starting point.
			i := int(seed.Add(257)) % len(hosts)
			for pb.Next() {
				h := hosts[i]
				bud.Deposit(h)
				bud.Withdraw(h)
				i = (i + 1) % len(hosts)
			}
		})
	})
}
