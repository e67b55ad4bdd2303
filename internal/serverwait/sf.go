package serverwait

import "unicode/utf8"

// This file is a parser for the parts of Structured Field Values
// (RFC 9651) that the RateLimit fields use: Lists and Dictionaries of
// Items with Parameters. It follows the parsing algorithms of RFC 9651 §4.2
// and fails where they fail, so that a malformed field can be ignored as a
// whole, as the ratelimit draft requires; it keeps nothing but the few
// values the rate-limit fields define, so it allocates nothing. Inner Lists
// are valid Structured Fields but not valid members of any rate-limit
// field; meeting one fails the parse, which has the same effect (the field
// is ignored).

// sfKind is the type of a bare item.
type sfKind uint8

const (
	sfInvalid sfKind = iota
	sfInteger
	sfDecimal
	sfString
	sfToken
	sfByteSequence
	sfBoolean
	sfDate
	sfDisplayString
)

// sfItem is a bare item: its type, its value when it is an Integer (or a
// Date), and its text as written, which identifies a quota policy.
type sfItem struct {
	kind sfKind
	num  int64
	raw  string
}

// rlParams holds the parameters a rate-limit field defines, all
// non-negative Integers: r (remaining quota) and t (effective window) on a
// RateLimit item (draft-11 §4.1), q (quota) and w (window, non-zero) on a
// RateLimit-Policy item (§3.1). Any other parameter is parsed and
// discarded, as the draft says ("regarded as comments"), and so are pk and
// qu, whose types nothing here depends on. bad records a defined parameter
// with a value of another type, which makes the field malformed.
type rlParams struct {
	field      rlField
	r, t, w    int64
	hasR, hasT bool
	hasQ, hasW bool
	bad        bool
}

// rlField says which parameters are defined where the parser is.
type rlField uint8

const (
	rlNone   rlField = iota // no parameters are defined (draft-07's Dictionary)
	rlItem                  // a RateLimit item: r and t
	rlPolicy                // a RateLimit-Policy item: q and w
)

func (p *rlParams) set(key string, v sfItem) {
	valid := v.kind == sfInteger && v.num >= 0
	// RFC 9651 §4.2.3.2: a later parameter with the same key overwrites.
	switch {
	case p.field == rlItem && key == "r":
		p.r, p.hasR = v.num, valid
	case p.field == rlItem && key == "t":
		p.t, p.hasT = v.num, valid
	case p.field == rlPolicy && key == "q":
		p.hasQ = valid
	case p.field == rlPolicy && key == "w":
		valid = valid && v.num > 0
		p.w, p.hasW = v.num, valid
	default:
		return
	}
	p.bad = p.bad || !valid
}

// sfParser is a cursor over one field line.
type sfParser struct {
	s string
	i int
}

func (p *sfParser) done() bool { return p.i >= len(p.s) }

func (p *sfParser) peek() byte {
	if p.done() {
		return 0
	}
	return p.s[p.i]
}

func (p *sfParser) skipSP() {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
}

func (p *sfParser) skipOWS() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// begin starts one field line of a List or Dictionary. RFC 9651 §4.2
// parses the field lines joined with commas, so the first line may start
// with SP only and every later one, which follows a comma, with OWS.
func (p *sfParser) begin(first bool) {
	if first {
		p.skipSP()
	} else {
		p.skipOWS()
	}
}

// next moves past the separator after a member and reports whether
// another member follows; ok is false when the line is malformed there
// (RFC 9651 §4.2.1 and §4.2.2: OWS, then end or "," OWS and a member).
func (p *sfParser) next() (more, ok bool) {
	p.skipOWS()
	if p.done() {
		return false, true
	}
	if p.s[p.i] != ',' {
		return false, false
	}
	p.i++
	p.skipOWS()
	if p.done() {
		return false, false // a trailing comma
	}
	return true, true
}

// listMember parses an Item and its parameters (§4.2.1.1 without Inner
// Lists).
func (p *sfParser) listMember(params *rlParams) (sfItem, bool) {
	item, ok := p.bareItem()
	if !ok {
		return sfItem{}, false
	}
	return item, p.parameters(params)
}

// dictMember parses key[=Item] and its parameters (§4.2.2 without Inner
// Lists); a member without "=" is the Boolean true.
func (p *sfParser) dictMember(params *rlParams) (key string, item sfItem, ok bool) {
	key, ok = p.key()
	if !ok {
		return "", sfItem{}, false
	}
	if p.peek() == '=' {
		p.i++
		if item, ok = p.bareItem(); !ok {
			return "", sfItem{}, false
		}
	} else {
		item = sfItem{kind: sfBoolean, num: 1, raw: "?1"}
	}
	return key, item, p.parameters(params)
}

// parameters parses *( ";" *SP key [ "=" bare-item ] ) (§4.2.3.2),
// keeping the ones rlParams knows.
func (p *sfParser) parameters(params *rlParams) bool {
	for p.peek() == ';' {
		p.i++
		p.skipSP()
		key, ok := p.key()
		if !ok {
			return false
		}
		v := sfItem{kind: sfBoolean, num: 1, raw: "?1"}
		if p.peek() == '=' {
			p.i++
			if v, ok = p.bareItem(); !ok {
				return false
			}
		}
		params.set(key, v)
	}
	return true
}

// key parses ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" ).
func (p *sfParser) key() (string, bool) {
	start := p.i
	c := p.peek()
	if !(isLcalpha(c) || c == '*') {
		return "", false
	}
	p.i++
	for !p.done() {
		c = p.s[p.i]
		if !(isLcalpha(c) || isDigit(c) || c == '_' || c == '-' || c == '.' || c == '*') {
			break
		}
		p.i++
	}
	return p.s[start:p.i], true
}

// bareItem parses any of the eight bare item types (§4.2.3.1).
func (p *sfParser) bareItem() (sfItem, bool) {
	start := p.i
	var item sfItem
	var ok bool
	switch c := p.peek(); {
	case c == '-' || isDigit(c):
		item, ok = p.number()
	case c == '"':
		ok = p.str()
		item.kind = sfString
	case c == '*' || isAlpha(c):
		p.token()
		item.kind, ok = sfToken, true
	case c == ':':
		ok = p.byteSequence()
		item.kind = sfByteSequence
	case c == '?':
		item, ok = p.boolean()
	case c == '@':
		p.i++
		item, ok = p.number()
		ok = ok && item.kind == sfInteger
		item.kind = sfDate
	case c == '%':
		ok = p.displayString()
		item.kind = sfDisplayString
	}
	if !ok {
		return sfItem{}, false
	}
	item.raw = p.s[start:p.i]
	return item, true
}

// number parses an Integer (at most 15 digits) or a Decimal (at most 12
// integer and 3 fraction digits), §4.2.4.
func (p *sfParser) number() (sfItem, bool) {
	neg := false
	if p.peek() == '-' {
		neg = true
		p.i++
	}
	if !isDigit(p.peek()) {
		return sfItem{}, false
	}
	var n int64
	intDigits := 0
	for !p.done() && isDigit(p.s[p.i]) {
		n = n*10 + int64(p.s[p.i]-'0')
		intDigits++
		p.i++
		if intDigits > 15 {
			return sfItem{}, false
		}
	}
	if neg {
		n = -n
	}
	if p.peek() != '.' {
		return sfItem{kind: sfInteger, num: n}, true
	}
	if intDigits > 12 {
		return sfItem{}, false
	}
	p.i++
	fracDigits := 0
	for !p.done() && isDigit(p.s[p.i]) {
		fracDigits++
		p.i++
	}
	if fracDigits == 0 || fracDigits > 3 {
		return sfItem{}, false
	}
	return sfItem{kind: sfDecimal}, true
}

// str parses a String (§4.2.5): printable ASCII, with only \" and \\
// escaped.
func (p *sfParser) str() bool {
	p.i++ // the opening DQUOTE
	for !p.done() {
		c := p.s[p.i]
		p.i++
		switch {
		case c == '\\':
			if p.done() || (p.s[p.i] != '"' && p.s[p.i] != '\\') {
				return false
			}
			p.i++
		case c == '"':
			return true
		case c < 0x20 || c > 0x7e:
			return false
		}
	}
	return false
}

// token parses ( ALPHA / "*" ) *( tchar / ":" / "/" ), §4.2.6.
func (p *sfParser) token() {
	p.i++
	for !p.done() && (isTchar(p.s[p.i]) || p.s[p.i] == ':' || p.s[p.i] == '/') {
		p.i++
	}
}

// byteSequence parses ":" *base64 ":" (§4.2.7). Like the RFC's own
// algorithm it checks the alphabet and leaves padding to the decoder,
// which nothing here needs.
func (p *sfParser) byteSequence() bool {
	p.i++
	for !p.done() {
		c := p.s[p.i]
		p.i++
		if c == ':' {
			return true
		}
		if !(isAlpha(c) || isDigit(c) || c == '+' || c == '/' || c == '=') {
			return false
		}
	}
	return false
}

// boolean parses "?0" or "?1" (§4.2.8).
func (p *sfParser) boolean() (sfItem, bool) {
	p.i++
	switch p.peek() {
	case '0':
		p.i++
		return sfItem{kind: sfBoolean, num: 0}, true
	case '1':
		p.i++
		return sfItem{kind: sfBoolean, num: 1}, true
	}
	return sfItem{}, false
}

// displayString parses %"..." (§4.2.10): printable ASCII except '%' and
// '"', with "%xx" lowercase hex escapes, whose decoded bytes must be valid
// UTF-8. Decoded bytes go through a 4-byte window instead of a buffer.
func (p *sfParser) displayString() bool {
	p.i++ // '%'
	if p.peek() != '"' {
		return false
	}
	p.i++
	var window [utf8.UTFMax]byte
	n := 0
	feed := func(b byte) bool {
		window[n] = b
		n++
		if !utf8.FullRune(window[:n]) {
			return true
		}
		r, size := utf8.DecodeRune(window[:n])
		if r == utf8.RuneError && size <= 1 {
			return false
		}
		n = copy(window[:], window[size:n])
		return true
	}
	for !p.done() {
		c := p.s[p.i]
		p.i++
		switch {
		case c < 0x20 || c > 0x7e:
			return false
		case c == '%':
			if p.i+2 > len(p.s) {
				return false
			}
			hi, ok1 := lowerHex(p.s[p.i])
			lo, ok2 := lowerHex(p.s[p.i+1])
			if !ok1 || !ok2 {
				return false
			}
			p.i += 2
			if !feed(hi<<4 | lo) {
				return false
			}
		case c == '"':
			return n == 0
		default:
			if !feed(c) {
				return false
			}
		}
	}
	return false
}

func lowerHex(c byte) (byte, bool) {
	switch {
	case isDigit(c):
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

func isLcalpha(c byte) bool { return 'a' <= c && c <= 'z' }

func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// isTchar reports a token character of RFC 9110 §5.6.2.
func isTchar(c byte) bool {
	if isAlpha(c) || isDigit(c) {
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}
