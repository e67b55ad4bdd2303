package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixture is a small git repository of modules, written from a map of
// slash-separated file names to contents.
type fixture struct {
	t    *testing.T
	root string
}

// baseFiles is a consistent two-module repository at v0.1.0: module a at the
// root, with a command, and module a/b requiring it.
func baseFiles() map[string]string {
	return map[string]string{
		"LICENSE":           "license text\n",
		".gitignore":        "ignored.txt\n",
		"go.mod":            "module example.com/a\n\ngo 1.25\n",
		"a.go":              "// Package a is a fixture.\npackage a\n\n// F is API.\nfunc F() int { return 1 }\n",
		"cmd/acmd/main.go":  "package main\n\nimport \"example.com/a\"\n\nfunc main() { println(a.F()) }\n",
		"internal/x/x.go":   "package x\n\nfunc X() {}\n",
		"testdata/m/go.mod": "module example.com/fixture/not/a/module\n",
		"_old/go.mod":       "module example.com/old\n",
		versionFile:         "v0.1.0\n",
		"b/go.mod":          "module example.com/a/b\n\ngo 1.25\n\nrequire example.com/a v0.1.0\n",
		"b/b.go":            "// Package b is a fixture.\npackage b\n\nimport \"example.com/a\"\n\n// G is API.\nfunc G() int { return a.F() + 1 }\n",
		"go.work":           "go 1.25\n\nuse (\n\t.\n\t./b\n)\n\nreplace (\n\texample.com/a v0.1.0 => .\n\texample.com/a/b v0.1.0 => ./b\n)\n",
	}
}

func newFixture(t *testing.T, files map[string]string) *fixture {
	t.Helper()
	f := &fixture{t: t, root: t.TempDir()}
	t.Cleanup(func() { makeWritable(f.root) })
	f.git("init", "-q", "-b", "main")
	f.write(files)
	f.commit("initial")
	return f
}

// write writes files; an empty content removes the file.
func (f *fixture) write(files map[string]string) {
	f.t.Helper()
	for name, content := range files {
		p := filepath.Join(f.root, filepath.FromSlash(name))
		if content == "" {
			if err := os.Remove(p); err != nil {
				f.t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			f.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
}

func (f *fixture) read(name string) string {
	f.t.Helper()
	data, err := os.ReadFile(filepath.Join(f.root, filepath.FromSlash(name)))
	if err != nil {
		f.t.Fatal(err)
	}
	return string(data)
}

func (f *fixture) commit(msg string) {
	f.t.Helper()
	f.git("add", "-A")
	f.git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", msg)
}

func (f *fixture) git(args ...string) string {
	f.t.Helper()
	out, err := git(f.root, args...)
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

// repo loads the fixture's working tree, or a revision.
func (f *fixture) repo(rev string) *repo {
	f.t.Helper()
	r, err := loadRepo(f.root, rev)
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

func (f *fixture) tags() []string {
	f.t.Helper()
	tags, err := gitTags(f.root)
	if err != nil {
		f.t.Fatal(err)
	}
	return tags
}

// makeWritable undoes the module cache's read-only modes so that
// t.TempDir can remove it.
func makeWritable(dir string) {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o755)
		}
		return nil
	})
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
