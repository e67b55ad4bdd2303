package storm

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestCalendarOrder files events as the simulation does, each due between
// now and the horizon after it, and checks that they come out in the
// order of (at, id), as from a sorted list: events in the slot being
// taken, ties on the nanosecond, gaps that leave the calendar empty, and
// jumps far past its last slot; with slots of 262 µs (a million clients'
// storm) and of 1 s (the widest).
func TestCalendarOrder(t *testing.T) {
	const horizon = 10 * time.Second
	for _, width := range []int64{1 << 18, 1 << 30} {
		for _, d := range []struct {
			name  string
			delay func(r *rand.Rand) int64
		}{
			{"anywhere", func(r *rand.Rand) int64 { return r.Int64N(int64(horizon) + 1) }},
			{"the same slot", func(r *rand.Rand) int64 { return r.Int64N(width) }},
			{"a few nanoseconds", func(r *rand.Rand) int64 { return r.Int64N(4) }},
			{"the horizon or nothing", func(r *rand.Rand) int64 { return int64(horizon) * r.Int64N(2) }},
		} {
			t.Run(fmt.Sprintf("%v/%s", time.Duration(width), d.name), func(t *testing.T) {
				calendarOrder(t, newCalendar(horizon, time.Duration(width)), horizon, d.delay)
			})
		}
	}
}

// calendarOrder drives c with events due delay after the current time.
func calendarOrder(t *testing.T, c calendar, horizon time.Duration, delay func(r *rand.Rand) int64) {
	r := rand.New(rand.NewPCG(1, 2))
	var want []event            // pending, sorted
	pending := map[int32]bool{} // their ids
	var now int64
	for step := range 25_000 {
		switch {
		case len(want) == 0 && r.IntN(2) == 0:
			// Empty: time moves on, beyond the ring's length.
			now += 3 * int64(horizon)
		case r.IntN(2) == 0 || len(want) == 0:
			ev := event{at: now + delay(r), id: r.Int32N(2000)}
			if pending[ev.id] {
				continue // ids are unique among the events pending
			}
			pending[ev.id] = true
			c.push(ev)
			i := len(want)
			for i > 0 && ev.before(&want[i-1]) {
				i--
			}
			want = slices.Insert(want, i, ev)
		default:
			p := c.peek()
			if p == nil {
				t.Fatalf("step %d: peek found nothing, want %+v", step, want[0])
			}
			if got := c.pop(); got != want[0] || *p != got {
				t.Fatalf("step %d: took %+v (peeked %+v), want %+v", step, got, *p, want[0])
			}
			now = want[0].at
			delete(pending, want[0].id)
			want = want[1:]
		}
		if len(want) == 0 && c.peek() != nil {
			t.Fatalf("step %d: peek found %+v in an empty calendar", step, *c.peek())
		}
	}
}
