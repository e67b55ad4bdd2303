package storm

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/saferetry/saferetry"
)

// SimParams describe a simulated storm.
//
// The simulation runs on a virtual clock, with one priority queue of
// events and no goroutine per client. Clients start logical requests
// independently of how earlier ones fare (an open load): each waits an
// exponentially distributed think time, of mean Think, between the starts
// of its logical requests. Those arrivals are, together, a Poisson stream
// of rate Clients/Think in which each arrival belongs to a client drawn
// uniformly, and that is how they are generated: one pending arrival
// instead of one per client, which keeps the queue as small as the
// retries in flight. Client i belongs to service instance i mod Instances;
// each instance has its own retry budget, as each process has its own
// transport.
//
// Every attempt goes through the rules of a real saferetry.Transport: the
// library's DefaultStrategy classifies the server's answer (a 503 to a GET
// is transient), the retry is made only while the attempt number is at
// most MaxRetries, its wait comes from the library's Exponential.Delay
// (default bounds, the configuration's jitter) and it is asked of the
// instance's saferetry.Budget, made by saferetry.NewBudget() with its
// defaults and the virtual clock, before the wait. The server serves at
// most Capacity attempts per 100 ms bucket, first come first served, and
// rejects the others at once with 503; during the outage it rejects all.
type SimParams struct {
	Clients   int           // clients, at least 1
	Instances int           // service instances, one budget each; 1 to Clients
	Think     time.Duration // mean time between a client's logical requests
	Capacity  int           // attempts the server serves per 100 ms bucket
	Service   time.Duration // time the server takes to serve an attempt
	Phases    Phases        // the outage, and when arrivals stop
	Seed      uint64        // seeds arrivals and jitter: same seed, same run

	// MaxEvents bounds the events processed; zero means no bound.
	MaxEvents int64
	// Progress, if set, is called every ProgressEvery events (zero means
	// 1<<22) with the virtual time and the events processed so far.
	Progress      func(now time.Duration, events int64)
	ProgressEvery int64
}

// SimStats says how much work a simulation did.
type SimStats struct {
	Events int64 // attempts and arrivals processed
}

// ErrEventLimit is returned by Simulate when it reached MaxEvents.
var ErrEventLimit = errors.New("storm: simulation stopped at its event limit")

// simTail is how long past Phases.End a simulation's recorder reaches:
// retries started before the end may land after it (at most the sum of
// three capped waits), and are still counted.
const simTail = 5 * time.Second

// simHost is the upstream's host, the budgets' key.
const simHost = "upstream.example:443"

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
		rec:      NewRecorder(p.Phases.End + simTail),
		arrivals: rand.New(rand.NewPCG(p.Seed, 1)),
		meanGap:  float64(p.Think) / float64(p.Clients),
	}
	jitter := rand.New(rand.NewPCG(p.Seed, 2))
	s.backoff = saferetry.Exponential{
		Initial: 100 * time.Millisecond, // the library's defaults
		Max:     10 * time.Second,
		Jitter:  c.Jitter,
		Rand:    jitter.Int64N,
	}
	epoch := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return epoch.Add(time.Duration(s.now)) }
	s.budgets = make([]*saferetry.Budget, p.Instances) // nil: no budget
	if c.Budget {
		for i := range s.budgets {
			s.budgets[i] = saferetry.NewBudget(saferetry.BudgetClock(clock))
		}
	}
	s.req, _ = http.NewRequest(http.MethodGet, "http://"+simHost+"/", nil)
	s.ok = &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Request: s.req}
	s.unavailable = &http.Response{StatusCode: http.StatusServiceUnavailable, Header: http.Header{}, Request: s.req}
	if s.p.ProgressEvery <= 0 {
		s.p.ProgressEvery = 1 << 22
	}
	err := s.run()
	return s.rec, SimStats{Events: s.events}, err
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
	}
	return nil
}

// event is a retry attempt due at a virtual time; seq orders events due at
// the same time by when they were scheduled, so runs are deterministic.
type event struct {
	at  int64
	seq uint64
	id  int32 // index into sim.reqs
}

// simReq is a logical request in flight.
type simReq struct {
	start    int64
	attempt  int32 // the number of the attempt due next
	instance int32
	prev     time.Duration // the previous backoff delay
}

type sim struct {
	p   SimParams
	c   Config
	rec *Recorder

	now     int64 // the virtual time, in ns since the start of the run
	events  int64
	seq     uint64
	queue   []event // a binary min-heap on (at, seq)
	reqs    []simReq
	free    []int32
	arrival int64 // when the next logical request starts

	arrivals *rand.Rand
	meanGap  float64 // mean ns between arrivals, all clients together
	backoff  saferetry.Exponential
	budgets  []*saferetry.Budget

	bucket int64 // the server's current 100 ms bucket
	used   int   // attempts served in it

	req             *http.Request
	ok, unavailable *http.Response
}

func (s *sim) run() error {
	s.arrival = s.gap()
	end := int64(s.p.Phases.End)
	for {
		if s.arrival < end && (len(s.queue) == 0 || s.arrival <= s.queue[0].at) {
			s.now = s.arrival
			s.arrival += s.gap()
			s.start()
		} else if len(s.queue) > 0 {
			ev := s.pop()
			s.now = ev.at
			s.attempt(ev.id)
		} else {
			return nil
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

// start begins a logical request from a client drawn at random: it
// deposits in its instance's budget, as Transport does once per logical
// request, and makes its first attempt.
func (s *sim) start() {
	client := s.arrivals.IntN(s.p.Clients)
	var id int32
	if n := len(s.free); n > 0 {
		id, s.free = s.free[n-1], s.free[:n-1]
	} else {
		id = int32(len(s.reqs))
		s.reqs = append(s.reqs, simReq{})
	}
	s.reqs[id] = simReq{start: s.now, attempt: 1, instance: int32(client % s.p.Instances)}
	s.rec.Start(time.Duration(s.now))
	s.budgets[s.reqs[id].instance].Deposit(simHost)
	s.attempt(id)
}

// attempt sends the next attempt of request id, and decides what follows
// it in the order saferetry.Transport does: classify, check the retry
// limit, compute the wait, ask the budget, wait.
func (s *sim) attempt(id int32) {
	r := &s.reqs[id]
	served := s.serve()
	s.rec.Attempt(time.Duration(s.now), served)
	resp := s.unavailable
	if served {
		resp = s.ok
	}
	n := int(r.attempt)
	verdict := saferetry.DefaultStrategy.Classify(saferetry.Attempt{Request: s.req, Response: resp, Number: n})
	switch {
	case verdict == saferetry.Done:
		s.finish(id, served, time.Duration(s.now-r.start)+s.p.Service)
		return
	case verdict == saferetry.Fatal, n > s.c.MaxRetries:
		s.finish(id, false, 0)
		return
	}
	delay := s.backoff.Delay(n, r.prev)
	if !s.budgets[r.instance].Withdraw(simHost) {
		s.finish(id, false, 0)
		return
	}
	r.prev = delay
	r.attempt++
	s.push(event{at: s.now + int64(delay), id: id})
}

func (s *sim) finish(id int32, ok bool, latency time.Duration) {
	s.rec.Finish(ok, latency)
	s.free = append(s.free, id)
}

// serve reports whether the server serves an attempt arriving now.
func (s *sim) serve() bool {
	ph := s.p.Phases
	if s.now >= int64(ph.OutageStart) && s.now < int64(ph.OutageEnd) {
		return false
	}
	if b := s.now / int64(BucketWidth); b != s.bucket {
		s.bucket, s.used = b, 0
	}
	if s.used >= s.p.Capacity {
		return false
	}
	s.used++
	return true
}

func (s *sim) push(ev event) {
	ev.seq = s.seq
	s.seq++
	q := append(s.queue, ev)
	i := len(q) - 1
	for i > 0 {
		parent := (i - 1) / 2
		if !q[i].before(q[parent]) {
			break
		}
		q[i], q[parent] = q[parent], q[i]
		i = parent
	}
	s.queue = q
}

func (s *sim) pop() event {
	q := s.queue
	top := q[0]
	last := len(q) - 1
	q[0] = q[last]
	q = q[:last]
	for i := 0; ; {
		least, l, r := i, 2*i+1, 2*i+2
		if l < last && q[l].before(q[least]) {
			least = l
		}
		if r < last && q[r].before(q[least]) {
			least = r
		}
		if least == i {
			break
		}
		q[i], q[least] = q[least], q[i]
		i = least
	}
	s.queue = q
	return top
}

func (e event) before(o event) bool {
	return e.at < o.at || e.at == o.at && e.seq < o.seq
}
