package storm

import (
	"testing"
	"time"
)

func withdrawAll(b budgetPart, now time.Duration, timedOut bool) int {
	n := 0
	for {
		ok, _ := b.withdraw(now, timedOut)
		if !ok {
			return n
		}
		n++
	}
}

// The anchors' budgets, as their sources and documents define them.
func TestAnchorBudgets(t *testing.T) {
	t.Run("finagle: a reserve of 100 that comes back a window later", func(t *testing.T) {
		f := newFinagleBudget()
		if got := withdrawAll(f, 0, false); got != 100 {
			t.Fatalf("granted %d, want the reserve, 100", got)
		}
		for range 10 {
			f.deposit(time.Second)
		}
		if got := withdrawAll(f, time.Second, false); got != 1 {
			t.Errorf("ten deposits earned %d, want 1", got)
		}
		if got := withdrawAll(f, 10*time.Second, false); got != 100 {
			t.Errorf("a window later: %d granted, want the whole reserve back at once, 100", got)
		}
	})
	t.Run("grpc: 10 tokens, failures cost 1, no retry at or below half", func(t *testing.T) {
		g := &grpcBudget{tokens: grpcMaxTokens}
		for i := range 4 {
			g.outcome(0, false, 1, 0)
			if ok, _ := g.withdraw(0, false); !ok {
				t.Fatalf("refused after %d failures, want a retry while above 5 tokens", i+1)
			}
		}
		g.outcome(0, false, 1, 0) // 5 tokens: half
		if ok, _ := g.withdraw(0, false); ok {
			t.Fatal("granted a retry at half the tokens")
		}
		for range 10 {
			g.outcome(0, true, 1, 0) // +0.1 each: 6
		}
		if ok, _ := g.withdraw(0, false); !ok {
			t.Error("refused a retry with 6 tokens")
		}
	})
	t.Run("aws: 500 tokens, 5 per retry, 10 after a timeout, refunds on success", func(t *testing.T) {
		a := &awsBudget{tokens: awsQuota}
		if got := withdrawAll(a, 0, false); got != 100 {
			t.Fatalf("granted %d retries, want 500/5 = 100", got)
		}
		a = &awsBudget{tokens: awsQuota}
		if got := withdrawAll(a, 0, true); got != 50 {
			t.Fatalf("granted %d retries after timeouts, want 500/10 = 50", got)
		}
		ok, cost := (&awsBudget{tokens: 5}).withdraw(0, false)
		a = &awsBudget{tokens: 0}
		a.outcome(0, true, 2, cost) // a successful retry: its cost back, and 1
		if !ok || a.tokens != 6 {
			t.Errorf("%d tokens after a successful retry, want 5 + 1", a.tokens)
		}
		a.outcome(0, true, 1, 0)
		if a.tokens != 7 {
			t.Errorf("%d tokens after a successful first attempt, want 7", a.tokens)
		}
	})
}

// The windowed throttles count only attempts that got an outcome, and
// let a whole bucket's counts go at once.
func TestWindowThrottle(t *testing.T) {
	always := func() float64 { return 0.999 }
	never := func() float64 { return 0 }
	w := newWindowThrottle(time.Minute, 20, 1/0.9, 0.9) // failsafe-go's defaults
	for i := range 100 {
		w.outcome(time.Duration(i)*10*time.Millisecond, false)
	}
	if w.admit(time.Second, never) {
		t.Fatal("admitted with every execution failed, at a draw of 0")
	}
	if !w.admit(time.Second, always) {
		t.Fatal("rejected at a draw over the cap of 0.9")
	}
	// Rejections are not executions: the counts stay as they were.
	if w.sumExec != 100 || w.sumSuc != 0 {
		t.Fatalf("counts %d/%d after admissions, want 100/0", w.sumExec, w.sumSuc)
	}
	// The failures were all in the first 3s bucket: a minute later they
	// leave at once.
	if !w.admit(time.Minute+time.Second, never) {
		t.Error("rejected a minute after the failures")
	}
	e := newWindowThrottle(30*time.Second, 30, 1/0.95, 0.8) // Envoy's defaults
	for i := range 100 {
		e.outcome(time.Duration(i)*10*time.Millisecond, i%10 != 0) // 90% success
	}
	// (100 - 90/0.95) / 101 = 0.052
	rejected := 0
	for i := range 1000 {
		if !e.admit(time.Second, func() float64 { return float64(i) / 1000 }) {
			rejected++
		}
	}
	if rejected < 45 || rejected > 60 {
		t.Errorf("rejected %d of 1000 draws at 90%% success, want about 52", rejected)
	}
}

// saferetry's budget and throttle share one host, as in saferetry.Budget.
func TestSaferetryControlSharesItsHost(t *testing.T) {
	c := newControl(config(t, "saferetry+K2"), 2, 0)
	if _, ok := c.(*saferetryControl); !ok {
		t.Fatalf("control %T, want one *saferetryControl for budget and throttle", c)
	}
	for i := range 100 {
		c.outcome(time.Duration(i)*time.Millisecond, false, 1, 0)
	}
	// Overloaded: the gate refuses retries and the throttle rejects.
	if ok, _ := c.withdraw(100*time.Millisecond, false); ok {
		t.Error("a retry granted while every recent attempt failed")
	}
	if c.admit(100*time.Millisecond, func() float64 { return 0 }) {
		t.Error("admitted at a draw of 0 while every recent attempt failed")
	}
	off := newControl(config(t, "saferetry"), 0, 0)
	if !off.admit(0, func() float64 { return 0 }) {
		t.Error("throttling off rejected an attempt")
	}
}
