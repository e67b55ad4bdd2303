package storm

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/saferetry/saferetry"
)

// SimParams describe a simulated storm.
//
// The simulation runs on a virtual clock, with a queue of the events to
// come and no goroutine per client. Clients start logical requests
// independently of how earlier ones fare (an open load): each waits an
// exponentially distributed think time, of mean Think, between the starts
// of its logical requests. Those arrivals are, together, a Poisson stream
// of rate Clients/Think in which each arrival belongs to a client drawn
// uniformly, and that is how they are generated: one pending arrival
// instead of one per client, which keeps the queue as small as the
// retries in flight. Client i belongs to service instance i mod Instances;
// each instance has its own overload control (budget, throttle), as each
// process has its own transport.
//
// Every attempt goes through the rules of a real saferetry.Transport: the
// library's DefaultStrategy classifies the outcome (a 503 or an attempt
// timeout to a GET is transient), the retry is made only while the attempt
// number is at most MaxRetries, its wait comes from the library's
// Exponential.Delay (default bounds, the configuration's jitter), and it
// is asked of the instance's budget and throttle before the wait (a first
// attempt of its throttle just before it is sent); the retry of a
// timed-out attempt is asked of the budget's gate again when it falls due.
//
// The server is one of two kinds. By default it answers at once: it
// serves at most Capacity attempts per 100 ms bucket, first come first
// served, and rejects the others with 503 (cheap rejections, as a load
// shedder in front of a server makes them). With Queue set it is a queue:
// one FIFO of unbounded length in front of a server that works through
// Capacity attempts per 100 ms, and does the work of every attempt it
// queued, including those whose client gave up waiting (Timeout) and went
// away; a client whose attempt is not done within Timeout sees an attempt
// timeout. During the outage (Phases) the server keeps OutageCapacity of
// its capacity: 0 is a full outage, in which the instant server answers
// every attempt 503 and the queue stops. FailRate is the probability that
// an attempt the instant server would serve is answered 503 anyway (a
// healthy server's background of failures).
type SimParams struct {
	Clients   int           // clients, at least 1
	Instances int           // service instances, one control each; 1 to Clients
	Think     time.Duration // mean time between a client's logical requests
	Capacity  int           // attempts the server serves per 100 ms bucket
	Service   time.Duration // time the instant server takes to serve an attempt
	Phases    Phases        // the outage, and when arrivals stop
	Seed      uint64        // seeds arrivals, jitter and draws: same seed, same run

	// OutageCapacity is the fraction of Capacity left during the outage.
	OutageCapacity float64
	// FailRate is the fraction of attempts the instant server answers
	// 503 whatever its load.
	FailRate float64
	// Queue makes the server a FIFO queue; Timeout is then the clients'
	// attempt timeout, which must be set.
	Queue   bool
	Timeout time.Duration

	// MaxEvents bounds the events processed; zero means no bound.
	MaxEvents int64
	// Progress, if set, is called every ProgressEvery events (zero means
	// 1<<22) with the virtual time and the events processed so far.
	Progress      func(now time.Duration, events int64)
	ProgressEvery int64
}

// SimStats says how much work a simulation did.
type SimStats struct {
	Events int64 // arrivals, attempts and outcomes processed
}

// ErrEventLimit is returned by Simulate when it reached MaxEvents.
var ErrEventLimit = errors.New("storm: simulation stopped at its event limit")

// simTail is how long past Phases.End a simulation's recorder reaches:
// retries started before the end may land after it (at most the sum of
// three capped waits, plus attempt timeouts), and are still counted.
const simTail = 10 * time.Second

// Simulate runs configuration c through the storm p describes and returns
// what it recorded. It is deterministic: the same c, p and p.Seed give the
// same counts. The arrivals depend on the seed only, so every configuration
// sees the same logical requests at the same times.
func Simulate(c Config, p SimParams) (*Recorder, SimStats, error) {
	if err := p.validate(); err != nil {
		return nil, SimStats{}, err
	}
	s := &sim{
		p:        p,
		c:        c,
		counts:   newTally(p.Phases.End + simTail),
		arrivals: rand.New(rand.NewPCG(p.Seed, 1)),
		draws:    rand.New(rand.NewPCG(p.Seed, 3)),
		meanGap:  float64(p.Think) / float64(p.Clients),
	}
	s.draw = s.draws.Float64
	jitter := rand.New(rand.NewPCG(p.Seed, 2))
	s.backoff = saferetry.Exponential{
		Initial: 100 * time.Millisecond, // the library's defaults
		Max:     10 * time.Second,
		Jitter:  c.Jitter,
		Rand:    jitter.Int64N,
	}
	// Slots of about 32 arrivals: a million clients' 100 000 a second
	// make them 262 µs wide, and in a storm a hundred events fall in each.
	s.retries = newCalendar(s.backoff.Max, time.Duration(32*s.meanGap))
	s.controls = make([]control, p.Instances)
	phases := rand.New(rand.NewPCG(p.Seed, 4))
	for i := range s.controls {
		s.controls[i] = newControl(c, c.K, phases.Float64())
	}
	req, _ := http.NewRequest(http.MethodGet, "http://upstream.example/", nil)
	unavailable := &http.Response{StatusCode: http.StatusServiceUnavailable, Header: http.Header{}, Request: req}
	timeout := fmt.Errorf("%w after %v", saferetry.ErrAttemptTimeout, p.Timeout)
	for n := range s.retryable {
		// What DefaultStrategy says of a failed attempt number n+1: the
		// same for every request, so asked once.
		s.retryable[n][0] = saferetry.DefaultStrategy.Classify(saferetry.Attempt{Request: req, Response: unavailable, Number: n + 1}) == saferetry.Transient
		s.retryable[n][1] = saferetry.DefaultStrategy.Classify(saferetry.Attempt{Request: req, Err: timeout, Number: n + 1}) == saferetry.Transient
	}
	s.work = float64(BucketWidth) / float64(max(p.Capacity, 1))
	s.limits = [2]int{p.Capacity, int(math.Round(p.OutageCapacity * float64(p.Capacity)))}
	if s.p.ProgressEvery <= 0 {
		s.p.ProgressEvery = 1 << 22
	}
	err := s.run()
	return s.counts.recorder(), SimStats{Events: s.events}, err
}

func (p SimParams) validate() error {
	switch {
	case p.Clients < 1:
		return fmt.Errorf("storm: %d clients, want at least 1", p.Clients)
	case p.Instances < 1 || p.Instances > p.Clients:
		return fmt.Errorf("storm: %d instances, want 1 to the number of clients (%d)", p.Instances, p.Clients)
	case p.Think <= 0:
		return fmt.Errorf("storm: think time %v, want more than zero", p.Think)
	case p.Capacity < 0:
		return fmt.Errorf("storm: capacity %d, want at least 0", p.Capacity)
	case p.Phases.OutageStart < 0 || p.Phases.OutageEnd < p.Phases.OutageStart || p.Phases.End < p.Phases.OutageEnd:
		return fmt.Errorf("storm: phases %+v out of order", p.Phases)
	case !(p.OutageCapacity >= 0 && p.OutageCapacity <= 1):
		return fmt.Errorf("storm: outage capacity %v, want 0 to 1", p.OutageCapacity)
	case !(p.FailRate >= 0 && p.FailRate <= 1):
		return fmt.Errorf("storm: fail rate %v, want 0 to 1", p.FailRate)
	case p.Queue && p.Timeout <= 0:
		return fmt.Errorf("storm: a queueing server needs an attempt timeout, got %v", p.Timeout)
	}
	return nil
}

// event is a logical request in flight, filed under the time of what
// happens to it next: its retry falls due, or its attempt's outcome
// reaches it. A request in flight has exactly one event, and its whole
// state travels in it, so handling an event reads nothing else: with
// hundreds of thousands of requests in flight, a separate table of
// requests cost a cache miss per event.
//
// Events due at the same nanosecond are taken in the order of their
// requests' ids, which a seed determines, so runs are deterministic.
type event struct {
	at       int64         // when, in ns since the start of the run
	start    int64         // when the logical request started
	prev     time.Duration // the previous backoff delay
	id       int32         // unique among the requests in flight
	instance int32
	cost     int32 // what the budget charged for the retry in flight
	attempt  int16 // the number of the attempt in flight or due next, at most 9
	timedOut bool  // the attempt before the retry due timed out
}

// before orders events on (at, id).
func (e *event) before(o *event) bool {
	return e.at < o.at || e.at == o.at && e.id < o.id
}

type sim struct {
	p      SimParams
	c      Config
	counts *tally

	now     int64 // the virtual time, in ns since the start of the run
	events  int64
	retries calendar // retries due
	// The queueing server's outcomes need no priority queue: a FIFO
	// server finishes attempts in the order they came, and timeouts fall
	// due in the order the attempts were sent, so each list is already
	// sorted.
	served, timedOut fifo
	// Request ids: the next never used, and those freed, reused last
	// freed first.
	ids     int32
	free    []int32
	arrival int64 // when the next logical request starts

	arrivals *rand.Rand
	draws    *rand.Rand // throttle draws and random failures
	draw     func() float64
	meanGap  float64 // mean ns between arrivals, all clients together
	backoff  saferetry.Exponential
	controls []control
	// retryable[n][timedOut] is DefaultStrategy's verdict on attempt n+1
	// failing with a 503 (0) or an attempt timeout (1).
	retryable [8][2]bool

	bucket int64  // the instant server's current 100 ms bucket
	used   int    // attempts served in it
	limits [2]int // attempts it serves per bucket: normally, during the outage

	work float64 // the queue's ns of work per attempt at full capacity
	busy float64 // when the queue's server will have done all it holds
}

func (s *sim) run() error {
	s.arrival = s.gap()
	end := int64(s.p.Phases.End)
	for {
		// The next event: the earliest of the next arrival (which wins a
		// tie), the first retry due and the first of each outcome list.
		retry, served, timedOut := s.retries.peek(), s.served.peek(), s.timedOut.peek()
		next := retry
		if served != nil && (next == nil || served.before(next)) {
			next = served
		}
		if timedOut != nil && (next == nil || timedOut.before(next)) {
			next = timedOut
		}
		switch {
		case s.arrival < end && (next == nil || s.arrival <= next.at):
			s.now = s.arrival
			s.arrival += s.gap()
			s.start()
		case next == nil:
			return nil
		case next == retry:
			ev := s.retries.pop()
			s.now = ev.at
			s.retry(ev)
		default:
			ev := *next
			if next == served {
				s.served.pop()
			} else {
				s.timedOut.pop()
			}
			s.now = ev.at
			s.handle(ev, next == served, next == timedOut)
		}
		s.events++
		if s.p.Progress != nil && s.events%s.p.ProgressEvery == 0 {
			s.p.Progress(time.Duration(s.now), s.events)
		}
		if s.p.MaxEvents > 0 && s.events >= s.p.MaxEvents {
			return fmt.Errorf("%w (%d events, at %v of virtual time)", ErrEventLimit, s.events, time.Duration(s.now))
		}
	}
}

// gap draws the time to the next arrival.
func (s *sim) gap() int64 { return int64(s.arrivals.ExpFloat64()*s.meanGap) + 1 }

// start begins a logical request from a client drawn at random: its first
// attempt is offered to the instance's throttle, then deposited in its
// budget and sent, as Transport does.
func (s *sim) start() {
	client := s.arrivals.IntN(s.p.Clients)
	ev := event{start: s.now, attempt: 1, instance: int32(client % s.p.Instances)}
	if n := len(s.free); n > 0 {
		ev.id, s.free = s.free[n-1], s.free[:n-1]
	} else {
		ev.id = s.ids
		s.ids++
	}
	now := time.Duration(s.now)
	s.counts.start(now)
	ctl := s.controls[ev.instance]
	if !ctl.admit(now, s.draw) {
		s.counts.throttle(now)
		s.finish(&ev, false)
		return
	}
	ctl.deposit(now)
	s.send(ev)
}

// retry makes the retry of ev that is due now, unless the gate now
// refuses the retry of a timed-out attempt, which ends the request (its
// token goes back).
func (s *sim) retry(ev event) {
	now := time.Duration(s.now)
	ctl := s.controls[ev.instance]
	if ev.timedOut && ctl.gated(now) {
		ctl.refund(now, ev.cost)
		s.finish(&ev, false)
		return
	}
	s.counts.retry(now)
	s.send(ev)
}

// send delivers ev's attempt to the server. The instant server answers
// at once; the queue's answer (or the client's timeout) is an event.
func (s *sim) send(ev event) {
	if !s.p.Queue {
		served := s.serve()
		s.counts.attempt(time.Duration(s.now), served)
		s.handle(ev, served, false)
		return
	}
	done := s.finishAt(max(float64(s.now), s.busy), s.work)
	s.busy = done
	limit := s.now + int64(s.p.Timeout)
	ok := done <= float64(limit)
	s.counts.attempt(time.Duration(s.now), ok)
	if ok {
		ev.at = int64(math.Ceil(done))
		s.served.push(ev)
	} else {
		ev.at = limit
		s.timedOut.push(ev)
	}
}

// handle decides what follows the outcome of ev's attempt, in the order
// saferetry.Transport does: record it, classify, check the retry limit,
// compute the wait, ask the budget, wait.
func (s *sim) handle(ev event, ok, timedOut bool) {
	now := time.Duration(s.now)
	ctl := s.controls[ev.instance]
	ctl.outcome(now, ok, int32(ev.attempt), ev.cost)
	if ok {
		s.finish(&ev, true)
		return
	}
	n := int(ev.attempt)
	to := 0
	if timedOut {
		to = 1
	}
	if n > s.c.MaxRetries || n > len(s.retryable) || !s.retryable[n-1][to] {
		s.finish(&ev, false)
		return
	}
	delay := s.backoff.Delay(n, ev.prev)
	granted, cost := ctl.withdraw(now, timedOut)
	if !granted {
		s.finish(&ev, false)
		return
	}
	// The throttle's decision on a retry is made with the budget's, before
	// the wait, as Transport makes it (a rejected retry hands back the
	// response it follows, which the wait would have released).
	if !ctl.admit(now, s.draw) {
		ctl.refund(now, cost)
		s.counts.throttle(now)
		s.finish(&ev, false)
		return
	}
	ev.cost = cost
	ev.prev = delay
	ev.attempt++
	ev.timedOut = timedOut
	ev.at = s.now + int64(delay)
	s.retries.push(ev)
}

// finish ends ev's logical request and frees its id.
func (s *sim) finish(ev *event, ok bool) {
	var latency time.Duration
	if ok {
		latency = time.Duration(s.now - ev.start)
		if !s.p.Queue {
			latency += s.p.Service
		}
	}
	s.counts.finish(time.Duration(ev.start), ok, latency)
	s.free = append(s.free, ev.id)
}

// serve reports whether the instant server serves an attempt arriving
// now.
func (s *sim) serve() bool {
	if b := s.now / int64(BucketWidth); b != s.bucket {
		s.bucket, s.used = b, 0
	}
	limit := s.limits[0]
	if ph := s.p.Phases; s.now >= int64(ph.OutageStart) && s.now < int64(ph.OutageEnd) {
		limit = s.limits[1]
	}
	if s.used >= limit {
		return false
	}
	if s.p.FailRate > 0 && s.draws.Float64() < s.p.FailRate {
		return false
	}
	s.used++
	return true
}

// finishAt returns when the queue's server, starting at start (ns), has
// done work ns of full-capacity work, at OutageCapacity of its speed
// during the outage.
func (s *sim) finishAt(start, work float64) float64 {
	ph := s.p.Phases
	t := start
	for {
		speed, until := 1.0, math.Inf(1)
		switch {
		case t < float64(ph.OutageStart):
			until = float64(ph.OutageStart)
		case t < float64(ph.OutageEnd):
			speed, until = s.p.OutageCapacity, float64(ph.OutageEnd)
		}
		if speed > 0 {
			if need := work / speed; t+need <= until {
				return t + need
			}
			work -= (until - t) * speed
		}
		t = until
	}
}

// fifo is a queue of events pushed in time order: a ring buffer, whose
// length is a power of two.
type fifo struct {
	evs     []event
	head, n int
}

func (f *fifo) push(ev event) {
	if f.n == len(f.evs) {
		evs := make([]event, max(2*len(f.evs), 1024))
		k := copy(evs, f.evs[f.head:])
		copy(evs[k:], f.evs[:f.head])
		f.evs, f.head = evs, 0
	}
	f.evs[(f.head+f.n)&(len(f.evs)-1)] = ev
	f.n++
}

func (f *fifo) peek() *event {
	if f.n == 0 {
		return nil
	}
	return &f.evs[f.head]
}

func (f *fifo) pop() {
	f.head = (f.head + 1) & (len(f.evs) - 1)
	f.n--
}
