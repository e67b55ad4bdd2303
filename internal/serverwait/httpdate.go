package serverwait

import "time"

// The date parsers below replace http.ParseTime and time.Parse, which
// allocate an error for every layout that does not match (http.ParseTime
// tries three in turn): a garbage header must cost nothing. They are
// stricter than the standard library, never looser; FuzzHTTPDate and
// FuzzRFC3339 check that whatever they accept, the standard library
// accepts with the same instant.

var shortDays = [...]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}

var longDays = [...]string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"}

var months = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// httpDate parses the three HTTP-date formats of RFC 9110 §5.6.7:
//
//	IMF-fixdate  Sun, 06 Nov 1994 08:49:37 GMT
//	RFC 850      Sunday, 06-Nov-94 08:49:37 GMT
//	asctime      Sun Nov  6 08:49:37 1994
//
// Names are matched case-sensitively, as the RFC writes them. The day of
// the week is checked for spelling only (as net/http does). A two-digit
// RFC 850 year is read as RFC 9110 requires: in the century that puts it
// no more than 50 years after now.
func httpDate(s string, now time.Time) (time.Time, bool) {
	switch {
	case len(s) == len("Sun, 06 Nov 1994 08:49:37 GMT") && s[3] == ',':
		return imfFixdate(s)
	case len(s) == len("Sun Nov  6 08:49:37 1994") && s[3] == ' ':
		return asctime(s)
	default:
		return rfc850(s, now)
	}
}

// imfFixdate parses "Sun, 06 Nov 1994 08:49:37 GMT".
func imfFixdate(s string) (time.Time, bool) {
	if !oneOf(s[:3], shortDays[:]) || s[3:5] != ", " || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' || s[25:] != " GMT" {
		return time.Time{}, false
	}
	day, ok1 := digits(s[5:7])
	month, ok2 := monthNumber(s[8:11])
	year, ok3 := digits(s[12:16])
	if !ok1 || !ok2 || !ok3 {
		return time.Time{}, false
	}
	return civil(year, month, day, s[17:25])
}

// rfc850 parses "Sunday, 06-Nov-94 08:49:37 GMT".
func rfc850(s string, now time.Time) (time.Time, bool) {
	comma := -1
	for i := 0; i < len(s) && i <= len("Wednesday"); i++ {
		if s[i] == ',' {
			comma = i
			break
		}
	}
	if comma < 0 || !oneOf(s[:comma], longDays[:]) {
		return time.Time{}, false
	}
	s = s[comma:]
	if len(s) != len(", 06-Nov-94 08:49:37 GMT") || s[:2] != ", " || s[4] != '-' || s[8] != '-' || s[11] != ' ' || s[20:] != " GMT" {
		return time.Time{}, false
	}
	day, ok1 := digits(s[2:4])
	month, ok2 := monthNumber(s[5:8])
	yy, ok3 := digits(s[9:11])
	if !ok1 || !ok2 || !ok3 {
		return time.Time{}, false
	}
	year := now.UTC().Year()/100*100 + yy
	if year > now.UTC().Year()+50 {
		year -= 100
	}
	return civil(year, month, day, s[12:20])
}

// asctime parses "Sun Nov  6 08:49:37 1994" (a day below 10 is padded with
// a space, RFC 9110's date3; "06" is accepted too, as net/http does).
func asctime(s string) (time.Time, bool) {
	if !oneOf(s[:3], shortDays[:]) || s[3] != ' ' || s[7] != ' ' || s[10] != ' ' || s[19] != ' ' {
		return time.Time{}, false
	}
	month, ok1 := monthNumber(s[4:7])
	dd := s[8:10]
	if dd[0] == ' ' {
		dd = dd[1:]
	}
	day, ok2 := digits(dd)
	year, ok3 := digits(s[20:24])
	if !ok1 || !ok2 || !ok3 {
		return time.Time{}, false
	}
	return civil(year, month, day, s[11:19])
}

// rfc3339 parses the RFC 3339 timestamps Anthropic sends in its
// anthropic-ratelimit-*-reset headers ("2025-08-21T12:40:59Z"), with an
// optional fraction of a second and a "Z" or numeric offset.
func rfc3339(s string) (time.Time, bool) {
	if len(s) < len("2006-01-02T15:04:05Z") || s[4] != '-' || s[7] != '-' || s[10] != 'T' {
		return time.Time{}, false
	}
	year, ok1 := digits(s[:4])
	month, ok2 := digits(s[5:7])
	day, ok3 := digits(s[8:10])
	if !ok1 || !ok2 || !ok3 || month < 1 || month > 12 {
		return time.Time{}, false
	}
	clock := s[11:19]
	s = s[19:]
	nanos := 0
	if s[0] == '.' {
		i := 1
		for ; i < len(s) && isDigit(s[i]); i++ {
			if i <= 9 {
				nanos = nanos*10 + int(s[i]-'0')
			}
		}
		if i == 1 {
			return time.Time{}, false
		}
		for n := i; n <= 9; n++ {
			nanos *= 10
		}
		s = s[i:]
	}
	var offset int
	switch {
	case s == "Z":
	case len(s) == len("+07:00") && (s[0] == '+' || s[0] == '-') && s[3] == ':':
		hh, ok1 := digits(s[1:3])
		mm, ok2 := digits(s[4:6])
		if !ok1 || !ok2 || hh > 23 || mm > 59 {
			return time.Time{}, false
		}
		offset = (hh*60 + mm) * 60
		if s[0] == '-' {
			offset = -offset
		}
	default:
		return time.Time{}, false
	}
	t, ok := civil(year, time.Month(month), day, clock)
	if !ok {
		return time.Time{}, false
	}
	return t.Add(time.Duration(nanos) - time.Duration(offset)*time.Second), true
}

// civil builds a UTC time from a validated date and an "hh:mm:ss" clock.
func civil(year int, month time.Month, day int, clock string) (time.Time, bool) {
	if clock[2] != ':' || clock[5] != ':' {
		return time.Time{}, false
	}
	hh, ok1 := digits(clock[0:2])
	mm, ok2 := digits(clock[3:5])
	ss, ok3 := digits(clock[6:8])
	if !ok1 || !ok2 || !ok3 || hh > 23 || mm > 59 || ss > 59 || day < 1 || day > daysIn(month, year) {
		return time.Time{}, false
	}
	return time.Date(year, month, day, hh, mm, ss, 0, time.UTC), true
}

// digits parses a short run of ASCII digits (every byte a digit).
func digits(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, len(s) > 0
}

func monthNumber(s string) (time.Month, bool) {
	for i, m := range months {
		if s == m {
			return time.Month(i + 1), true
		}
	}
	return 0, false
}

func oneOf(s string, names []string) bool {
	for _, n := range names {
		if s == n {
			return true
		}
	}
	return false
}

func daysIn(m time.Month, year int) int {
	switch m {
	case time.February:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case time.April, time.June, time.September, time.November:
		return 30
	}
	return 31
}
