package storm

import (
	"cmp"
	"math/bits"
	"slices"
	"time"
)

// calendar is the simulation's queue of retries due: a calendar queue
// (R. Brown, CACM 31(10), 1988) rather than a heap. A retry falls due at
// most the backoff's maximum after it is filed, so the queue needs to see
// only that far ahead: time is cut into slots of 2^shift ns, and a
// ring of slots longer than that maximum holds each event, unsorted, in
// the slot of its time. A slot is sorted when the queue reaches it. With
// the hundreds of thousands of retries a million clients' storm keeps
// pending, filing is an append and taking the next is a read, in memory
// mostly visited in order, where each of a heap's pops walked a path of
// cache misses.
//
// Events come out in the order of (at, id), as from a heap. An event
// must be due no earlier than the last one taken, and at most the
// horizon given to newCalendar after the current time, which must not
// pass the next event due. The simulation's time does not, and it peeks
// each time round its loop, which keeps the current slot up with it.
type calendar struct {
	// ring[a&mask] holds the events of slot a, for the slots a after cur
	// within the ring's length; ring's length is a power of two.
	ring  [][]event
	mask  int64
	shift uint // a slot is 2^shift ns
	// cur is the slot whose events are in ready, sorted on (at, id) from
	// ready[head] on. Events filed at or before cur's slot are inserted
	// into ready in order, so that every event in ready is due before
	// every event in the ring.
	cur    int64
	ready  []event
	head   int
	inRing int       // events in the ring, not counting ready
	spare  [][]event // empty arrays, for slots that get their first event
	keys   []uint64  // advance's sort keys
}

// newCalendar returns a calendar for events due at most horizon after
// the time they are filed at, in slots about width wide (a power of two
// ns, from 1 µs to 1 s). A slot should hold tens of events: enough that
// few slots are empty, few enough to sort in cache.
func newCalendar(horizon, width time.Duration) calendar {
	shift := uint(min(max(bits.Len64(uint64(width))-1, 10), 30))
	// One slot more than the horizon covers, since an event may be due
	// in the slot horizon after the current one but not at its start,
	// and one for the current slot: the ring must never wrap onto it.
	slots := uint64(horizon>>shift) + 2
	n := int64(1) << bits.Len64(slots)
	return calendar{ring: make([][]event, n), mask: n - 1, shift: shift}
}

// push files ev, due at ev.at.
func (c *calendar) push(ev event) {
	slot := ev.at >> c.shift
	if c.head == len(c.ready) && c.inRing == 0 {
		// Empty: the current slot moves to ev's, however far ahead of
		// the old one now is.
		c.cur, c.ready, c.head = slot, append(c.ready[:0], ev), 0
		return
	}
	if slot <= c.cur {
		c.ready = slices.Insert(c.ready, c.head+sortedIndex(c.ready[c.head:], &ev), ev)
		return
	}
	if slot-c.cur > c.mask {
		panic("storm: an event filed beyond the calendar's horizon")
	}
	s := &c.ring[slot&c.mask]
	if *s == nil && len(c.spare) > 0 {
		*s, c.spare = c.spare[len(c.spare)-1], c.spare[:len(c.spare)-1]
	}
	*s = append(*s, ev)
	c.inRing++
}

// sortedIndex returns where ev goes in sorted evs.
func sortedIndex(evs []event, ev *event) int {
	lo, hi := 0, len(evs)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if evs[mid].before(ev) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// peek returns the next event due, nil if none is.
func (c *calendar) peek() *event {
	if c.head == len(c.ready) {
		if c.inRing == 0 {
			return nil
		}
		c.advance()
	}
	return &c.ready[c.head]
}

// pop removes the next event due and returns it; peek must have returned
// it.
func (c *calendar) pop() event {
	c.head++
	return c.ready[c.head-1]
}

// advance makes the next slot that holds events the current one, and
// sorts its events into ready.
func (c *calendar) advance() {
	for {
		c.cur++
		if len(c.ring[c.cur&c.mask]) > 0 {
			break
		}
	}
	slot := &c.ring[c.cur&c.mask]
	evs := *slot
	*slot = nil
	c.inRing -= len(evs)
	// Sort keys rather than events: an event's key is its offset in the
	// slot (shift bits, at most 30) above its index in evs (32), and integers
	// sort several times faster than 40-byte structs compared by a
	// function. Events due at the same nanosecond are then in index
	// order, and sorted again by id.
	keys := c.keys[:0]
	for i := range evs {
		keys = append(keys, uint64(evs[i].at&(1<<c.shift-1))<<32|uint64(i))
	}
	slices.Sort(keys)
	ready := c.ready[:0]
	for _, k := range keys {
		ready = append(ready, evs[uint32(k)])
	}
	for i := 1; i < len(ready); i++ {
		if ready[i].at != ready[i-1].at {
			continue
		}
		first := i - 1
		for i+1 < len(ready) && ready[i+1].at == ready[first].at {
			i++
		}
		slices.SortFunc(ready[first:i+1], func(a, b event) int { return cmp.Compare(a.id, b.id) })
	}
	c.keys, c.ready, c.head = keys, ready, 0
	// evs is kept for the next slot to get its first event: the arrays
	// go round, and a run allocates only while the events pending grow.
	c.spare = append(c.spare, evs[:0])
}
