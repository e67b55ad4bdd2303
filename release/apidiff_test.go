package main

import (
	"strings"
	"testing"
)

func TestVerdict(t *testing.T) {
	for _, tc := range []struct {
		base, planned            string
		incompatible, compatible bool
		ok                       bool
		why                      string
	}{
		{"v0.1.0", "v0.1.1", false, false, true, "allowed"},
		{"v0.1.0", "v0.1.1", false, true, false, "needs at least v0.2.0"},
		{"v0.1.0", "v0.1.1", true, false, false, "needs at least v0.2.0"},
		{"v0.1.0", "v0.2.0", true, true, true, "allowed"},           // before v1 a minor release may break
		{"v0.1.0", "v0.2.0-rc.1", true, false, true, "allowed"},     // a prerelease of the right version
		{"v0.2.0-rc.1", "v0.2.0", true, false, true, "allowed"},     // a prerelease promised nothing
		{"v1.2.0", "v1.3.0", false, true, true, "allowed"},          // from v1, a minor release adds
		{"v1.2.0", "v1.3.0", true, false, false, "at least v2.0.0"}, // but does not break
		{"v1.2.0", "v1.2.1", false, true, false, "at least v1.3.0"},
		{"v0.3.0", "v0.2.0", false, false, false, "older"},
		{"v0.1.0", "v0.1.0", true, false, true, "the next release must be at least v0.2.0"},
		{"v0.1.0", "v0.1.0", false, false, true, "the next release must be at least v0.1.1"},
	} {
		ok, why := verdict(tc.base, tc.planned, tc.incompatible, tc.compatible)
		if ok != tc.ok || !strings.Contains(why, tc.why) {
			t.Errorf("verdict(%s, %s, incompatible %v, compatible %v) = %v %q, want %v and %q",
				tc.base, tc.planned, tc.incompatible, tc.compatible, ok, why, tc.ok, tc.why)
		}
	}
}

func TestAPIDiffWithoutTagsSkips(t *testing.T) {
	f := newFixture(t, baseFiles())
	var out strings.Builder
	if err := f.repo("").apidiff(&out, f.tags()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "no release tag yet, so no API to compare with: skipped") {
		t.Errorf("output: %s", out.String())
	}
}

// After a release, removing an exported function is a breaking change:
// a patch release may not carry it, the next minor release may.
func TestAPIDiffAgainstTheLastTag(t *testing.T) {
	t.Setenv("GOFLAGS", "-modcacherw")
	t.Setenv("GOPROXY", "off")
	// A module needing a newer Go than the root: the base's workspace must
	// say the higher version.
	files := baseFiles()
	files["b/go.mod"] = "module example.com/a/b\n\ngo 1.26.0\n\nrequire example.com/a v0.1.0\n"
	files["go.work"] = strings.Replace(files["go.work"], "go 1.25", "go 1.26.0", 1)
	f := newFixture(t, files)
	f.git("tag", "v0.1.0")
	f.git("tag", "b/v0.1.0")
	f.write(map[string]string{
		"a.go":      "// Package a is a fixture.\npackage a\n\n// F2 replaces F.\nfunc F2() int { return 1 }\n",
		"b/b.go":    "// Package b is a fixture.\npackage b\n\nimport \"example.com/a\"\n\n// G is API.\nfunc G() int { return a.F2() + 1 }\n\n// H is new.\nfunc H() {}\n",
		"c/go.mod":  "module example.com/a/c\n\ngo 1.25\n",
		"c/c.go":    "// Package c is new.\npackage c\n",
		versionFile: "v0.1.1\n",
	})
	if err := f.repo("").sync("v0.1.1"); err != nil {
		t.Fatal(err)
	}

	var out strings.Builder
	err := f.repo("").apidiff(&out, f.tags())
	if err == nil || !strings.Contains(err.Error(), "2 module(s) change their API more than v0.1.1 allows") {
		t.Fatalf("apidiff at v0.1.1: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"example.com/a: compared with v0.1.0",
		"incompatible: F: removed",
		"compatible:   F2: added",
		"FAIL: v0.1.1 after v0.1.0 needs at least v0.2.0",
		"example.com/a/b: compared with b/v0.1.0",
		"compatible:   H: added",
		"example.com/a/c: no release tag before v0.1.1: new in this release, nothing to compare",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("apidiff's output lacks %q:\n%s", want, out.String())
		}
	}

	if err := f.repo("").sync("v0.2.0"); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := f.repo("").apidiff(&out, f.tags()); err != nil {
		t.Fatalf("apidiff at v0.2.0: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "v0.2.0 after v0.1.0: allowed") {
		t.Errorf("output:\n%s", out.String())
	}
}
