package main

import (
	"archive/zip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestProxyTreeLayout(t *testing.T) {
	f := newFixture(t, baseFiles())
	f.write(map[string]string{"ignored.txt": "not in git\n", "b/ignored.txt": "not in git\n"})
	r := f.repo("HEAD")
	dir := t.TempDir()
	vs := r.proxyVersions(f.tags())
	if err := r.writeProxy(dir, vs); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		"example.com/a/@v/list", "example.com/a/@v/v0.1.0.info", "example.com/a/@v/v0.1.0.mod", "example.com/a/@v/v0.1.0.zip",
		"example.com/a/b/@v/list", "example.com/a/b/@v/v0.1.0.mod", "example.com/a/b/@v/v0.1.0.zip",
	} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Error(err)
		}
	}
	if got := readZipNames(t, filepath.Join(dir, "example.com/a/b/@v/v0.1.0.zip")); !slices.Equal(got, []string{
		"example.com/a/b@v0.1.0/LICENSE", // the repository's, as the go command adds it
		"example.com/a/b@v0.1.0/b.go",
		"example.com/a/b@v0.1.0/go.mod",
	}) {
		t.Errorf("b's zip holds %q", got)
	}
	got := readZipNames(t, filepath.Join(dir, "example.com/a/@v/v0.1.0.zip"))
	for _, name := range got {
		if strings.Contains(name, "/b/") || strings.Contains(name, "ignored") {
			t.Errorf("a's zip holds %s: a nested module's or an ignored file", name)
		}
	}
	if !slices.Contains(got, "example.com/a@v0.1.0/cmd/acmd/main.go") {
		t.Errorf("a's zip lacks its command: %q", got)
	}
	if mod, _ := os.ReadFile(filepath.Join(dir, "example.com/a/b/@v/v0.1.0.mod")); string(mod) != baseFiles()["b/go.mod"] {
		t.Errorf("b's .mod is %q", mod)
	}
}

func readZipNames(t *testing.T, name string) []string {
	t.Helper()
	zr, err := zip.OpenReader(name)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	slices.Sort(names)
	return names
}

// verify on a fixture with no outside dependency, offline: each module
// resolves from a scratch module through the proxy tree alone, its
// packages build, its command installs by version, and the go command
// records both modules' hashes.
func TestVerifyResolvesEveryModuleFromScratch(t *testing.T) {
	f := newFixture(t, baseFiles())
	r := f.repo("HEAD")
	var out strings.Builder
	cfg := verifyConfig{work: t.TempDir(), modcache: t.TempDir(), upstream: "off", stdout: &out}
	t.Cleanup(func() { makeWritable(cfg.modcache); makeWritable(cfg.work) })
	if err := r.verify(f.tags(), cfg); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{
		"$ go get example.com/a/...@v0.1.0",
		"main.go imports example.com/a\n", // not internal/x, not the command
		"$ go install example.com/a/cmd/acmd@v0.1.0",
		"$ go get example.com/a/b/...@v0.1.0",
		"main.go imports example.com/a/b\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("verify's output lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.work, "bin", "acmd")); err != nil {
		t.Errorf("go install left no binary: %v", err)
	}
	sum, err := os.ReadFile(filepath.Join(cfg.work, "scratch", "b", "go.sum"))
	if err != nil || !containsAll(string(sum), "example.com/a v0.1.0 h1:", "example.com/a/b v0.1.0 h1:") {
		t.Errorf("the scratch module's go.sum does not record both modules: %q %v", sum, err)
	}
}

// What issue 13 is about: a module requiring a version of another that the
// release does not produce cannot be resolved from outside.
func TestVerifyFailsOnARequireTheReleaseDoesNotProduce(t *testing.T) {
	files := baseFiles()
	files["b/go.mod"] = "module example.com/a/b\n\ngo 1.25\n\nrequire example.com/a v0.0.0\n"
	f := newFixture(t, files)
	r := f.repo("HEAD")
	var out strings.Builder
	cfg := verifyConfig{work: t.TempDir(), modcache: t.TempDir(), upstream: "off", stdout: &out}
	t.Cleanup(func() { makeWritable(cfg.modcache); makeWritable(cfg.work) })
	err := r.verify(f.tags(), cfg)
	if err == nil || !containsAll(err.Error(), "example.com/a/b@v0.1.0", "go get example.com/a/b/...@v0.1.0", "example.com/a v0.0.0") {
		t.Fatalf("verify: %v, want go get of b to fail on example.com/a@v0.0.0\n%s", err, out.String())
	}
}

// A module in a subdirectory resolves by its tag prefix; the forgotten
// modules are really gone from the cache (a stale copy would hide a change).
func TestForgetModulesRemovesOnlyTheRepositorysModules(t *testing.T) {
	cache := t.TempDir()
	for _, d := range []string{
		"example.com/a@v0.1.0", "example.com/a/b@v0.1.0", "example.com/ab@v1.0.0",
		"cache/download/example.com/a/@v", "cache/download/example.com/a/b/@v", "cache/download/example.com/ab/@v",
	} {
		p := filepath.Join(cache, filepath.FromSlash(d))
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "f"), nil, 0o444); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o555); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { makeWritable(cache) })
	if err := forgetModules(cache, "example.com/a"); err != nil {
		t.Fatal(err)
	}
	for d, want := range map[string]bool{
		"example.com/a@v0.1.0": false, "example.com/a": false, "example.com/ab@v1.0.0": true,
		"cache/download/example.com/a": false, "cache/download/example.com/ab/@v": true,
	} {
		_, err := os.Stat(filepath.Join(cache, filepath.FromSlash(d)))
		if got := err == nil; got != want {
			t.Errorf("%s exists: %v, want %v", d, got, want)
		}
	}
}

// The same planned version served twice with different trees, through the
// same module cache, as CI does on every commit: the second run must see the
// second tree. Here a command moves into a module of its own; a stale view of
// the root module would still hold it, and the import would be ambiguous.
func TestVerifySeesANewTreeAtTheSameVersion(t *testing.T) {
	f := newFixture(t, baseFiles())
	modcache := t.TempDir()
	t.Cleanup(func() { makeWritable(modcache) })
	verifyOnce := func() (string, error) {
		var out strings.Builder
		work := t.TempDir()
		t.Cleanup(func() { makeWritable(work) })
		err := f.repo("HEAD").verify(f.tags(), verifyConfig{work: work, modcache: modcache, upstream: "off", stdout: &out})
		return out.String(), err
	}
	if out, err := verifyOnce(); err != nil {
		t.Fatalf("first run: %v\n%s", err, out)
	}
	f.write(map[string]string{"cmd/acmd/go.mod": "module example.com/a/cmd/acmd\n\ngo 1.25\n\nrequire example.com/a v0.1.0\n"})
	if err := f.repo("").sync("v0.1.0"); err != nil {
		t.Fatal(err)
	}
	f.commit("cmd/acmd is a module")
	out, err := verifyOnce()
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	if !strings.Contains(out, "$ go get example.com/a/cmd/acmd/...@v0.1.0") || strings.Count(out, "go install example.com/a/cmd/acmd@v0.1.0") != 1 {
		t.Errorf("the command should be installed once, from its own module:\n%s", out)
	}
}
