package serverwait

import "time"

// The IETF RateLimit and RateLimit-Policy fields, as
// draft-ietf-httpapi-ratelimit-headers-11 (23 May 2026) defines them; the
// wire format has not changed since draft-08:
//
//	RateLimit-Policy: "default";q=100;w=60
//	RateLimit: "default";r=0;t=30
//
// Both are Structured Field Lists of Items (RFC 9651) naming a quota
// policy. A RateLimit item's r is the quota left under that policy and t
// the seconds of its "effective window" (§4.1). The earlier forms still
// deployed are read too: draft-07's Dictionary
// ("RateLimit: limit=100, remaining=0, reset=30", express-rate-limit's
// "draft-7" mode) here, and drafts 00 to 06's separate RateLimit-Remaining
// and RateLimit-Reset fields with the other remaining/reset pairs in
// serverwait.go.
//
// When an item announces a wait. Only an exhausted quota does: r=0
// together with t, which is then the time until the quota can be used
// again (§7: "A client SHOULD NOT exceed the available quota within the
// time expressed in the effective window"). An item with r>0 announces no
// wait, even on a 429: quota remains under that policy, so the refusal came
// from elsewhere, and t says nothing about when it ends (§8.4: the window
// "does not imply anything about when the server will increase the
// available quota"). The draft's own example B.3 is such a 429, with
// "Retry-After: 20" and r=15;t=40; the client is expected to wait the 20
// seconds of Retry-After, not the 40 of t. An item with r=0 and no t takes
// the window w of the RateLimit-Policy item of the same name, if there is
// one: w is the longest any usual quota algorithm (fixed window, sliding
// window, token bucket refilled over w) can take to give quota back.
//
// Retry-After and RateLimit together. §7 says Retry-After "MUST take
// precedence and the effective window MAY be ignored"; §6 says a server's
// Retry-After "SHOULD NOT reference a point in time earlier than the end of
// the effective window". Parse takes the longest of all announced waits,
// which never returns before Retry-After (it keeps precedence as the
// least wait) and, for a server that follows §6, is Retry-After itself. It
// differs from ignoring t only for a server that announces r=0 with a t
// beyond its own Retry-After; waiting out t then avoids a request the
// server has said it would refuse.
//
// Malformed fields "MUST be ignored" (§7): a field whose lines do not all
// parse as Structured Fields, or with an item lacking r, or with r, t, q or
// w not a non-negative Integer (w non-zero), contributes nothing.

// rateLimit reads the RateLimit field, given its lines and those of
// RateLimit-Policy.
func (a *acc) rateLimit(lines, policy []string) {
	if len(lines) == 0 {
		return
	}
	reset, exhausted, ok := rateLimitList(lines, policy)
	if !ok {
		reset, exhausted, ok = rateLimitDictionary(lines)
	}
	if ok && exhausted {
		a.exhaust(reset)
	}
}

// rateLimitList reads the List form of draft-08 and later. ok is false when
// the field is malformed; exhausted reports an item with r=0 and a known
// window, reset the longest such window.
func rateLimitList(lines, policy []string) (reset time.Duration, exhausted, ok bool) {
	for i, line := range lines {
		p := sfParser{s: line}
		p.begin(i == 0)
		if p.done() {
			if len(lines) > 1 {
				return 0, false, false // joined, an empty line leaves an empty member
			}
			continue
		}
		for {
			params := rlParams{field: rlItem}
			id, ok := p.listMember(&params)
			if !ok || params.bad || !params.hasR {
				return 0, false, false
			}
			if params.r == 0 {
				window, known := params.t, params.hasT
				if !known {
					window, known = policyWindow(policy, id.raw)
				}
				if known {
					exhausted = true
					reset = max(reset, scale(window, "", time.Second))
				}
			}
			more, ok := p.next()
			if !ok {
				return 0, false, false
			}
			if !more {
				break
			}
		}
	}
	return reset, exhausted, true
}

// policyWindow returns the window w of the RateLimit-Policy item named id
// (the longest, should several carry that name), if the field is well
// formed: a non-empty List of Strings, each with a q.
func policyWindow(lines []string, id string) (w int64, found bool) {
	if len(lines) == 0 {
		return 0, false
	}
	for i, line := range lines {
		p := sfParser{s: line}
		p.begin(i == 0)
		if p.done() {
			return 0, false // empty: the field is a non-empty List (§3)
		}
		for {
			params := rlParams{field: rlPolicy}
			item, ok := p.listMember(&params)
			if !ok || item.kind != sfString || params.bad || !params.hasQ {
				return 0, false
			}
			if item.raw == id && params.hasW && params.w > w {
				w, found = params.w, true
			}
			more, ok := p.next()
			if !ok {
				return 0, false
			}
			if !more {
				break
			}
		}
	}
	return w, found
}

// rateLimitDictionary reads draft-07's Dictionary form, whose keys limit,
// remaining and reset are non-negative Integers (draft-07 §3.1 to §3.4);
// reset is in seconds. A later key overwrites an earlier one (RFC 9651
// §4.2.2).
func rateLimitDictionary(lines []string) (reset time.Duration, exhausted, ok bool) {
	var remaining, resetSeconds int64
	var hasRemaining, hasReset bool
	for i, line := range lines {
		p := sfParser{s: line}
		p.begin(i == 0)
		if p.done() {
			if len(lines) > 1 {
				return 0, false, false
			}
			continue
		}
		for {
			var params rlParams // draft-07 defines none: "they MUST be ignored"
			key, item, ok := p.dictMember(&params)
			if !ok {
				return 0, false, false
			}
			valid := item.kind == sfInteger && item.num >= 0
			switch key {
			case "limit":
			case "remaining":
				remaining, hasRemaining = item.num, true
			case "reset":
				resetSeconds, hasReset = item.num, true
			default:
				valid = true // an extension key
			}
			if !valid {
				return 0, false, false
			}
			more, ok := p.next()
			if !ok {
				return 0, false, false
			}
			if !more {
				break
			}
		}
	}
	if hasRemaining && remaining == 0 && hasReset {
		return scale(resetSeconds, "", time.Second), true, true
	}
	return 0, false, true
}
