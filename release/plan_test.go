package main

import (
	"strings"
	"testing"
)

func TestTagCreatesEveryTagOnceAtHEAD(t *testing.T) {
	f := newFixture(t, baseFiles())
	head := strings.TrimSpace(f.git("rev-parse", "HEAD"))
	var out strings.Builder
	if err := f.repo(head).tag(&out, f.tags(), true); err != nil {
		t.Fatal(err)
	}
	if len(f.tags()) != 0 || !strings.Contains(out.String(), "git tag -a -m 'example.com/a/b v0.1.0' b/v0.1.0 "+head) {
		t.Fatalf("dry run created tags %q or printed:\n%s", f.tags(), out.String())
	}
	out.Reset()
	if err := f.repo(head).tag(&out, f.tags(), false); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.tags(), " "); got != "b/v0.1.0 v0.1.0" {
		t.Errorf("tags %q", got)
	}
	for _, tag := range f.tags() {
		if at := strings.TrimSpace(f.git("rev-list", "-n", "1", tag)); at != head {
			t.Errorf("%s at %s, want HEAD %s", tag, at, head)
		}
	}
	if !strings.Contains(out.String(), "git push origin v0.1.0 b/v0.1.0") {
		t.Errorf("no push command printed:\n%s", out.String())
	}
	if err := f.repo(head).tag(&out, f.tags(), false); err == nil || !strings.Contains(err.Error(), "already tagged") {
		t.Errorf("second tag: %v", err)
	}
}

func TestTagRefusesADirtyTreeOrAnInconsistentPlan(t *testing.T) {
	f := newFixture(t, baseFiles())
	f.write(map[string]string{"a.go": "package a\n"})
	if err := f.repo("HEAD").tag(new(strings.Builder), nil, false); err == nil || !strings.Contains(err.Error(), "working tree has changes") {
		t.Errorf("dirty tree: %v", err)
	}
	f.write(map[string]string{"b/go.mod": "module example.com/a/b\n\ngo 1.25\n\nrequire example.com/a v0.0.0\n"})
	f.commit("bad require")
	if err := f.repo("HEAD").tag(new(strings.Builder), nil, false); err == nil || !strings.Contains(err.Error(), "requires example.com/a v0.0.0") {
		t.Errorf("inconsistent plan: %v", err)
	}
	if len(f.tags()) != 0 {
		t.Errorf("tags created: %q", f.tags())
	}
}

func TestPlanPrintsTagsAndRequires(t *testing.T) {
	f := newFixture(t, baseFiles())
	var out strings.Builder
	if err := f.repo("").printPlan(&out, nil); err != nil {
		t.Fatal(err)
	}
	if !containsAll(out.String(), "release v0.1.0 (to be tagged", "v0.1.0    example.com/a", "b/v0.1.0  example.com/a/b", "b/go.mod: require example.com/a v0.1.0") {
		t.Errorf("plan:\n%s", out.String())
	}
}
