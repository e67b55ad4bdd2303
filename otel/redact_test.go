package saferetryotel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/saferetry/saferetry"
	"go.opentelemetry.io/otel/attribute"
)

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestRedactURL: url.full never carries credentials from the userinfo,
// the value of a query parameter named like a secret (each default name,
// any case, escaped or not), or the fragment; everything else is kept
// byte for byte.
func TestRedactURL(t *testing.T) {
	r := newRedactor(nil, nil)
	cases := []struct{ in, want string }{
		{"https://api.test/v1/things?q=OpenTelemetry&page=2", "https://api.test/v1/things?q=OpenTelemetry&page=2"},
		{"https://alice:s3cret@api.test/", "https://REDACTED:REDACTED@api.test/"},
		{"https://ghp_tokenasuser@api.test/", "https://REDACTED@api.test/"},
		{"https://api.test/cb#access_token=SECRET&state=x", "https://api.test/cb"},
		{"https://api.test/?q=a%20b&token=SECRET&x=%2F", "https://api.test/?q=a%20b&token=REDACTED&x=%2F"},
		{"https://api.test/?TOKEN=SECRET", "https://api.test/?TOKEN=REDACTED"},
		{"https://api.test/?access%5Ftoken=SECRET", "https://api.test/?access%5Ftoken=REDACTED"},
		{"https://api.test/?token", "https://api.test/?token"}, // no value to hide
		{"https://api.test/?token=", "https://api.test/?token=REDACTED"},
		{"https://api.test/?keyword=go&monkey=1", "https://api.test/?keyword=go&monkey=1"}, // "key" is a whole name
		{"https://u:p@api.test:8443/p?sig=SECRET&a=1#frag", "https://REDACTED:REDACTED@api.test:8443/p?sig=REDACTED&a=1"},
	}
	// Each default name, and a name each "*" pattern catches.
	for _, name := range []string{
		"AWSAccessKeyId", "Signature", "sig", "X-Goog-Signature", "X-Goog-Credential",
		"X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token",
		"token", "access_token", "refresh_token", "id_token", "client_secret", "code",
		"api_key", "apikey", "api-key", "x_api_key", "key", "password", "db_password", "passwd", "pwd", "pass",
		"secret", "auth", "session", "sessionid",
	} {
		cases = append(cases, struct{ in, want string }{
			"https://api.test/p?keep=1&" + name + "=SECRET&also=2",
			"https://api.test/p?keep=1&" + name + "=REDACTED&also=2",
		})
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			if got := r.url(mustParse(t, tc.in)); got != tc.want {
				t.Errorf("url.full %q, want %q", got, tc.want)
			}
		})
	}
}

// TestRedactURLConfigured: SecretQueryParams replaces the default list;
// an empty list redacts no parameter, and userinfo still goes.
func TestRedactURLConfigured(t *testing.T) {
	in := "https://u:p@api.test/?token=T&session_ref=S&mine=M&ok=1"
	cases := []struct {
		name    string
		secrets []string
		want    string
	}{
		{"defaults", nil, "https://REDACTED:REDACTED@api.test/?token=REDACTED&session_ref=S&mine=M&ok=1"},
		{"own list", []string{"MINE", "session*"}, "https://REDACTED:REDACTED@api.test/?token=T&session_ref=REDACTED&mine=REDACTED&ok=1"},
		{"suffix", []string{"*_ref"}, "https://REDACTED:REDACTED@api.test/?token=T&session_ref=REDACTED&mine=M&ok=1"},
		{"empty list", []string{}, "https://REDACTED:REDACTED@api.test/?token=T&session_ref=S&mine=M&ok=1"},
		{"a lone star is no name", []string{"*", "**"}, "https://REDACTED:REDACTED@api.test/?token=T&session_ref=S&mine=M&ok=1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRedactor(nil, tc.secrets)
			if got := r.url(mustParse(t, in)); got != tc.want {
				t.Errorf("url.full %q, want %q", got, tc.want)
			}
		})
	}
}

// TestRedactMessage: error messages quote URLs (net/http's *url.Error
// does, with credentials); every quoted URL is redacted as url.full is.
func TestRedactMessage(t *testing.T) {
	r := newRedactor(nil, nil)
	uerr := &url.Error{Op: "Get", URL: "https://bob:hunter2@api.test/x?api_key=SECRET", Err: errors.New("connection reset")}
	cases := []struct{ in, want string }{
		{"dial tcp 10.0.0.1:443: connection refused", "dial tcp 10.0.0.1:443: connection refused"},
		{uerr.Error(), `Get "https://REDACTED:REDACTED@api.test/x?api_key=REDACTED": connection reset`},
		{"redirect to HTTPS://API.test/?Token=SECRET failed", "redirect to https://API.test/?Token=REDACTED failed"},
		{"two: http://a.test/?sig=S1 and 'https://b.test/?code=S2'", "two: http://a.test/?sig=REDACTED and 'https://b.test/?code=REDACTED'"},
		{"bad: https://api.test/%zz?token=SECRET", "bad: REDACTED"},
	}
	for _, tc := range cases {
		if got := r.message(tc.in); got != tc.want {
			t.Errorf("message(%q)\n got  %q\n want %q", tc.in, got, tc.want)
		}
	}
}

// TestRedactHeaders: captured headers keep their values unless secret:
// Authorization, Proxy-Authorization, Cookie and Set-Cookie always, the
// default API-key headers unless SecretHeaders replaces them.
func TestRedactHeaders(t *testing.T) {
	h := http.Header{}
	for _, name := range []string{
		"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie",
		"X-Api-Key", "Api-Key", "X-Auth-Token", "X-Goog-Api-Key", "Ocp-Apim-Subscription-Key", "X-Amz-Security-Token",
		"X-Custom-Secret", "X-Session-Id", "Content-Type", "Idempotency-Key", "X-Mine",
	} {
		h.Add(name, "v1-"+name)
		h.Add(name, "v2-"+name)
	}
	names := make([]string, 0, len(h))
	for name := range h {
		names = append(names, strings.ToLower(name)) // captured whatever the case given
	}
	cases := []struct {
		name    string
		secrets []string
		clear   []string // recorded as sent
	}{
		{"defaults", nil, []string{"Content-Type", "Idempotency-Key", "X-Mine"}},
		{"own list", []string{"x-mine"}, []string{
			"X-Api-Key", "Api-Key", "X-Auth-Token", "X-Goog-Api-Key", "Ocp-Apim-Subscription-Key", "X-Amz-Security-Token",
			"X-Custom-Secret", "X-Session-Id", "Content-Type", "Idempotency-Key"}},
		{"empty list", []string{}, []string{
			"X-Api-Key", "Api-Key", "X-Auth-Token", "X-Goog-Api-Key", "Ocp-Apim-Subscription-Key", "X-Amz-Security-Token",
			"X-Custom-Secret", "X-Session-Id", "Content-Type", "Idempotency-Key", "X-Mine"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRedactor(tc.secrets, nil)
			kvs := r.headerAttrs(nil, captured("http.request.header.", names), h)
			if len(kvs) != len(h) {
				t.Fatalf("%d headers recorded, want %d", len(kvs), len(h))
			}
			for name := range h {
				key := attribute.Key("http.request.header." + strings.ToLower(name))
				v, ok := attr(kvs, key)
				if !ok {
					t.Errorf("%s not recorded", key)
					continue
				}
				want := []string{"REDACTED", "REDACTED"}
				for _, c := range tc.clear {
					if http.CanonicalHeaderKey(c) == name {
						want = []string{"v1-" + name, "v2-" + name}
					}
				}
				if got := v.AsStringSlice(); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("%s = %q, want %q", key, got, want)
				}
			}
		})
	}
}

// TestNoSecretRecorded sends requests full of secrets through the
// instrumented stack, with every secret header captured, saferetry's log
// on, an error that quotes the URL, a retry and a stop, then looks for
// each secret in everything recorded: span names, attributes, events and
// statuses, metric attributes, and the log.
func TestNoSecretRecorded(t *testing.T) {
	secrets := map[string]string{ // what -> the secret value
		"URL password":           "pw-1f9a",
		"URL user":               "user-77c2",
		"query token":            "tok-5d1e",
		"query X-Amz-Signature":  "amzsig-0b3c",
		"query client_secret":    "clisec-8e2f",
		"fragment":               "frag-4c6d",
		"Authorization":          "bearer-9a0b",
		"Proxy-Authorization":    "proxy-3f5e",
		"Cookie":                 "cookie-2d4c",
		"Set-Cookie":             "setcookie-6b8a",
		"X-Api-Key":              "apikey-1c3e",
		"Api-Key":                "apikey2-5e7a",
		"X-Auth-Token":           "authtok-7a9c",
		"custom secret header":   "custom-0d2f",
		"custom secret query":    "customq-4b6d",
		"error message with URL": "errtok-8c0e",
	}
	h := newHarness(t)
	var logs bytes.Buffer
	cfg := h.config()
	cfg.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.RequestHeaders = []string{"Authorization", "Proxy-Authorization", "Cookie", "X-Api-Key", "Api-Key", "X-Auth-Token", "X-Corp", "Content-Type"}
	cfg.ResponseHeaders = []string{"Set-Cookie", "Content-Type"}
	cfg.SecretHeaders = append(DefaultSecretHeaders(), "x-corp")
	cfg.SecretQueryParams = append(DefaultSecretQueryParams(), "corp")
	rawURL := "https://" + secrets["URL user"] + ":" + secrets["URL password"] + "@api.test/v1/things" +
		"?q=visible&token=" + secrets["query token"] + "&X-Amz-Signature=" + secrets["query X-Amz-Signature"] +
		"&client_secret=" + secrets["query client_secret"] + "&corp=" + secrets["custom secret query"] +
		"#access_token=" + secrets["fragment"]
	base := &script{answer: func(n int, req *http.Request) (*http.Response, error) {
		switch n {
		case 1: // what a base wrapping an http.Client returns
			return nil, &url.Error{Op: "Get", URL: req.URL.String() + "&more=" + secrets["error message with URL"], Err: errors.New("connection reset by peer")}
		case 2:
			return answer(503, map[string]string{"Set-Cookie": "sid=" + secrets["Set-Cookie"], "Content-Type": "text/plain"}), nil
		}
		return answer(401, nil), nil
	}}
	tr := cfg.New(base, saferetry.WithMaxRetries(1), saferetry.WithBackoff(0, 0))
	req := newRequest(t, context.Background(), http.MethodGet, rawURL, nil)
	req.Header.Set("Authorization", "Bearer "+secrets["Authorization"])
	req.Header.Set("Proxy-Authorization", "Basic "+secrets["Proxy-Authorization"])
	req.Header.Set("Cookie", "sid="+secrets["Cookie"])
	req.Header.Set("X-Api-Key", secrets["X-Api-Key"])
	req.Header.Set("Api-Key", secrets["Api-Key"])
	req.Header.Set("X-Auth-Token", secrets["X-Auth-Token"])
	req.Header.Set("X-Corp", secrets["custom secret header"])
	req.Header.Set("Content-Type", "application/json")
	h.do(tr, req)
	if n := len(base.requests()); n != 2 {
		t.Fatalf("base saw %d attempts, want 2 (an error, a retry, a stop)", n)
	}

	var dump strings.Builder
	for _, s := range h.spans.GetSpans() {
		fmt.Fprintln(&dump, s.Name, s.Status.Description)
		for _, kv := range s.Attributes {
			fmt.Fprintln(&dump, kv.Key, kv.Value.Emit())
		}
		for _, ev := range s.Events {
			fmt.Fprintln(&dump, ev.Name)
			for _, kv := range ev.Attributes {
				fmt.Fprintln(&dump, kv.Key, kv.Value.Emit())
			}
		}
	}
	for name, pts := range h.metrics() {
		fmt.Fprintln(&dump, name, pts)
	}
	dump.WriteString(logs.String())
	recorded := dump.String()

	for what, secret := range secrets {
		t.Run(what, func(t *testing.T) {
			if strings.Contains(recorded, secret) {
				t.Errorf("%s (%s) was recorded:\n%s", what, secret, recorded)
			}
		})
	}
	// What was recorded instead.
	for _, want := range []string{
		"url.full https://REDACTED:REDACTED@api.test/v1/things?q=visible&token=REDACTED&X-Amz-Signature=REDACTED&client_secret=REDACTED&corp=REDACTED\n",
		"http.request.header.authorization [\"REDACTED\"]",
		"http.response.header.set-cookie [\"REDACTED\"]",
		"http.request.header.content-type [\"application/json\"]",
		"saferetry: retrying",
	} {
		if !strings.Contains(recorded, want) {
			t.Errorf("recorded nothing like %q:\n%s", want, recorded)
		}
	}
}
