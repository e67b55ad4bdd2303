package main

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func TestDiscoverFindsEveryGoModOutsideIgnoredDirectories(t *testing.T) {
	f := newFixture(t, baseFiles())
	for _, rev := range []string{"", "HEAD"} {
		r := f.repo(rev)
		var got []string
		for _, m := range r.modules {
			got = append(got, m.Dir+"="+m.Path)
		}
		want := []string{".=example.com/a", "b=example.com/a/b"}
		if !slices.Equal(got, want) {
			t.Errorf("rev %q: modules %v, want %v (testdata and _ directories hold no module)", rev, got, want)
		}
		if r.version != "v0.1.0" || r.rootPath != "example.com/a" {
			t.Errorf("rev %q: version %q root %q", rev, r.version, r.rootPath)
		}
	}
}

func TestTagNames(t *testing.T) {
	for _, tc := range []struct{ dir, want string }{
		{".", "v1.2.3"},
		{"keystore", "keystore/v1.2.3"},
		{"otel/sub", "otel/sub/v1.2.3"},
	} {
		if got := (&Module{Dir: tc.dir}).Tag("v1.2.3"); got != tc.want {
			t.Errorf("Tag of %s = %q, want %q", tc.dir, got, tc.want)
		}
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change map[string]string
		tags   []string // created on the fixture's commit
		want   []string // substrings of the problems, in order; none for a clean tree
	}{
		{name: "consistent"},
		{
			name:   "require of v0.0.0",
			change: map[string]string{"b/go.mod": "module example.com/a/b\n\ngo 1.25\n\nrequire example.com/a v0.0.0\n"},
			want:   []string{"b/go.mod: requires example.com/a v0.0.0; the release tags v0.1.0"},
		},
		{
			name:   "require of a version the release does not plan",
			change: map[string]string{"b/go.mod": "module example.com/a/b\n\ngo 1.25\n\nrequire example.com/a v0.0.9\n"},
			tags:   []string{"v0.0.9"},
			want:   []string{"requires example.com/a v0.0.9; the release tags v0.1.0"},
		},
		{
			name:   "replace directive",
			change: map[string]string{"b/go.mod": "module example.com/a/b\n\ngo 1.25\n\nrequire example.com/a v0.1.0\n\nreplace example.com/a => ../\n"},
			want:   []string{"b/go.mod: replace example.com/a => ../: ignored outside this repository"},
		},
		{
			name:   "require of a module no go.mod declares",
			change: map[string]string{"b/go.mod": "module example.com/a/b\n\ngo 1.25\n\nrequire (\n\texample.com/a v0.1.0\n\texample.com/a/c v0.1.0\n)\n"},
			want:   []string{"requires example.com/a/c v0.1.0, but no go.mod of this repository declares example.com/a/c"},
		},
		{
			name:   "module path that does not match its directory",
			change: map[string]string{"b/go.mod": "module example.com/bee\n\ngo 1.25\n\nrequire example.com/a v0.1.0\n"},
			want: []string{
				"b/go.mod: module example.com/bee; in directory b its tags only resolve for module example.com/a/b",
				"go.work: replace example.com/a/b: only the repository's own modules may be replaced",
				"go.work: does not replace example.com/bee v0.1.0 with ./b",
			},
		},
		{
			name:   "go.sum line for the repository's own module",
			change: map[string]string{"b/go.sum": "example.com/a v0.1.0/go.mod h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"},
			want:   []string{"b/go.sum: has a line for example.com/a v0.1.0/go.mod"},
		},
		{
			name: "new module missing from go.work",
			change: map[string]string{
				"c/go.mod": "module example.com/a/c\n\ngo 1.25\n\nrequire example.com/a/b v0.1.0\n",
				"c/c.go":   "package c\n",
			},
			want: []string{"go.work: does not use ./c (module example.com/a/c)", "go.work: does not replace example.com/a/c v0.1.0 with ./c"},
		},
		{
			name:   "go.work replacing another version",
			change: map[string]string{"go.work": "go 1.25\n\nuse (\n\t.\n\t./b\n)\n\nreplace (\n\texample.com/a v0.0.0 => .\n\texample.com/a/b v0.1.0 => ./b\n)\n"},
			want:   []string{"go.work: replace example.com/a v0.0.0 => .; want example.com/a v0.1.0 => .", "go.work: does not replace example.com/a v0.1.0 with ."},
		},
		{
			name:   "go.work replacing a module of another repository",
			change: map[string]string{"go.work": baseFiles()["go.work"] + "\nreplace example.org/dep v1.0.0 => ../dep\n"},
			want:   []string{"go.work: replace example.org/dep: only the repository's own modules may be replaced"},
		},
		{
			name:   "go.work missing",
			change: map[string]string{"go.work": ""},
			want:   []string{"go.work: missing"},
		},
		{
			name:   "version not canonical",
			change: map[string]string{versionFile: "0.1\n"},
			want:   []string{`release/VERSION: "0.1" is not a canonical semantic version`},
		},
		{
			name: "version older than a release",
			tags: []string{"v0.2.0", "b/v0.2.0"},
			want: []string{"release/VERSION: v0.1.0 is older than v0.2.0, already released", "release/VERSION: v0.1.0 is older than b/v0.2.0"},
		},
		{
			name: "module added after its release version was tagged",
			change: map[string]string{
				"c/go.mod": "module example.com/a/c\n\ngo 1.25\n\nrequire example.com/a v0.1.0\n",
				"c/c.go":   "package c\n",
				"b/go.mod": "module example.com/a/b\n\ngo 1.25\n\nrequire (\n\texample.com/a v0.1.0\n\texample.com/a/c v0.1.0\n)\n",
				"go.work":  "go 1.25\n\nuse (\n\t.\n\t./b\n\t./c\n)\n\nreplace (\n\texample.com/a v0.1.0 => .\n\texample.com/a/b v0.1.0 => ./b\n\texample.com/a/c v0.1.0 => ./c\n)\n",
			},
			tags: []string{"v0.1.0", "b/v0.1.0"},
			want: []string{"b/go.mod: requires example.com/a/c v0.1.0, but release v0.1.0 is already tagged without c/v0.1.0"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, baseFiles())
			for _, tag := range tc.tags {
				f.git("tag", tag)
			}
			f.write(tc.change)
			problems, _ := f.repo("").check(f.tags())
			if len(problems) != len(tc.want) {
				t.Fatalf("problems:\n%s\nwant %d matching %q", strings.Join(problems, "\n"), len(tc.want), tc.want)
			}
			for i, p := range problems {
				if !strings.Contains(p, tc.want[i]) {
					t.Errorf("problem %d: %q, want it to contain %q", i, p, tc.want[i])
				}
			}
		})
	}
}

// The state this repository was in before: requires of v0.0.0 satisfied by
// replace directives, no release version in go.work.
func TestSyncRepairsWhatCheckFinds(t *testing.T) {
	f := newFixture(t, baseFiles())
	f.write(map[string]string{
		"b/go.mod": "module example.com/a/b\n\ngo 1.25\n\nrequire example.com/a v0.0.0\n\nreplace example.com/a => ../\n",
		"b/go.sum": "example.com/a v0.0.0/go.mod h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nexample.org/dep v1.0.0/go.mod h1:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB=\n",
		"go.work":  "go 1.25\n\nuse (\n\t.\n)\n",
	})
	if problems, _ := f.repo("").check(nil); len(problems) != 6 {
		t.Fatalf("before sync, %d problems, want 6 (require, replace, go.sum, use, 2 go.work replaces):\n%s", len(problems), strings.Join(problems, "\n"))
	}
	if err := f.repo("").sync("v0.2.0"); err != nil {
		t.Fatal(err)
	}
	if problems, _ := f.repo("").check(nil); len(problems) > 0 {
		t.Fatalf("after sync:\n%s", strings.Join(problems, "\n"))
	}
	if got := f.read("b/go.mod"); got != "module example.com/a/b\n\ngo 1.25\n\nrequire example.com/a v0.2.0\n" {
		t.Errorf("b/go.mod after sync:\n%s", got)
	}
	if got := f.read("b/go.sum"); got != "example.org/dep v1.0.0/go.mod h1:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB=\n" {
		t.Errorf("b/go.sum after sync keeps other repositories' lines only; got:\n%s", got)
	}
	work := f.read("go.work")
	if !containsAll(work, "go 1.25\n", "\t.\n\t./b\n", "example.com/a v0.2.0 => .\n", "example.com/a/b v0.2.0 => ./b\n") {
		t.Errorf("go.work after sync:\n%s", work)
	}
	if got := f.read(versionFile); got != "v0.2.0\n" {
		t.Errorf("%s = %q", versionFile, got)
	}
	// A second sync changes nothing.
	f.commit("synced")
	if err := f.repo("").sync("v0.2.0"); err != nil {
		t.Fatal(err)
	}
	if st := f.git("status", "--porcelain"); st != "" {
		t.Errorf("second sync changed files:\n%s", st)
	}
}

func TestTidyLeavesNoReplace(t *testing.T) {
	f := newFixture(t, baseFiles())
	r := f.repo("")
	t.Setenv("GOFLAGS", "-modcacherw")
	t.Setenv("GOPROXY", "off") // the fixture needs nothing from outside
	var out strings.Builder
	if err := r.tidy(&out, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if st := f.git("status", "--porcelain"); st != "" {
		t.Errorf("tidy changed a tidy fixture:\n%s\n%s", st, f.git("diff"))
	}
}

// The repository this tool lives in must be consistent too, so that the
// README's test command catches a module added without go run ./release sync.
func TestThisRepository(t *testing.T) {
	root, err := repoRoot("..")
	if err != nil {
		t.Skip("not in a git checkout:", err)
	}
	if _, err := os.Stat(root + "/" + versionFile); err != nil {
		t.Skip("not this repository:", err)
	}
	r, err := loadRepo(root, "")
	if err != nil {
		t.Fatal(err)
	}
	tags, err := gitTags(root)
	if err != nil {
		t.Fatal(err)
	}
	if problems, _ := r.check(tags); len(problems) > 0 {
		t.Errorf("go run ./release check would fail:\n%s", strings.Join(problems, "\n"))
	}
}
