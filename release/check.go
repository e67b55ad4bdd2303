package main

import (
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/semver"
)

// plannedTags returns the tags that exist, or will exist once the planned
// release is tagged, for each module at the planned version. A release is
// tagged all at once: once any module's tag for the planned version exists,
// the release has happened, and a module added since has no tag at that
// version and gets none until the version moves on.
func (r *repo) plannedTags(tags []string) (planned map[*Module]bool, released bool) {
	planned = make(map[*Module]bool)
	for _, m := range r.modules {
		if slices.Contains(tags, m.Tag(r.version)) {
			released = true
			planned[m] = true
		}
	}
	if !released {
		for _, m := range r.modules {
			planned[m] = true
		}
	}
	return planned, released
}

// check returns every way the working tree disagrees with the planned
// release: the version itself, module paths that do not match their
// directories, replace directives, requires between the repository's
// modules at any version other than the planned one or at one the release
// will not tag, go.sum lines for the repository's own modules, and a
// go.work that does not cover exactly the modules found.
//
// Notes are what a reader should know but is not wrong.
func (r *repo) check(tags []string) (problems, notes []string) {
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	v := r.version
	switch {
	case !semver.IsValid(v) || semver.Canonical(v) != v:
		add("%s: %q is not a canonical semantic version such as v0.1.0", versionFile, v)
		return problems, nil
	case semver.Major(v) != "v0" && semver.Major(v) != "v1":
		add("%s: %s needs a /%s suffix on every module path; this tool handles v0 and v1 only", versionFile, v, semver.Major(v))
	}
	planned, released := r.plannedTags(tags)
	existing := r.releaseTags(tags)

	for _, m := range r.modules {
		want := r.rootPath
		if m.Dir != "." {
			want += "/" + m.Dir
		}
		if m.Path != want {
			add("%s/go.mod: module %s; in directory %s its tags only resolve for module %s", m.Dir, m.Path, m.Dir, want)
		}
		if vs := existing[m]; len(vs) > 0 && semver.Compare(vs[len(vs)-1], v) > 0 {
			add("%s: %s is older than %s, already released", versionFile, v, m.Tag(vs[len(vs)-1]))
		}
		for _, rep := range m.File.Replace {
			add("%s/go.mod: replace %s => %s: ignored outside this repository, and it stops `go install %s/...@version`; go.work does this job for development",
				m.Dir, rep.Old.Path, rep.New.Path, m.Path)
		}
		for _, req := range m.File.Require {
			if !r.ours(req.Mod.Path) {
				continue
			}
			dep := r.module(req.Mod.Path)
			switch {
			case dep == nil:
				add("%s/go.mod: requires %s %s, but no go.mod of this repository declares %s", m.Dir, req.Mod.Path, req.Mod.Version, req.Mod.Path)
			case req.Mod.Version != v:
				add("%s/go.mod: requires %s %s; the release tags %s (run: go run ./release sync)", m.Dir, req.Mod.Path, req.Mod.Version, dep.Tag(v))
			case !planned[dep]:
				add("%s/go.mod: requires %s %s, but release %s is already tagged without %s and will not produce it; move %s on (go run ./release sync -version NEXT)",
					m.Dir, req.Mod.Path, v, v, dep.Tag(v), versionFile)
			}
		}
		problems = append(problems, r.checkSum(m)...)
	}
	problems = append(problems, r.checkWork()...)
	if released {
		notes = append(notes, fmt.Sprintf("release %s is already tagged; the next one needs a new version in %s", v, versionFile))
		for _, m := range r.modules {
			if !planned[m] {
				notes = append(notes, fmt.Sprintf("%s has no tag %s: it gets its first one with the next version", m.Path, m.Tag(v)))
			}
		}
	}
	return problems, notes
}

// checkSum reports go.sum lines for the repository's own modules: go.work
// provides them during development, so a line could only have been
// computed from a tree that may differ from what the tag will hold, and a
// stale one breaks a build outside the workspace with a checksum mismatch.
func (r *repo) checkSum(m *Module) []string {
	name := path.Join(m.Dir, "go.sum")
	data, err := r.readFile(name)
	if err != nil {
		return nil // no go.sum: nothing to disagree with
	}
	var problems []string
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) == 3 && r.ours(f[0]) {
			problems = append(problems, fmt.Sprintf("%s: has a line for %s %s; the repository's own modules come from go.work (run: go run ./release sync)", name, f[0], f[1]))
		}
	}
	return problems
}

// checkWork compares go.work with the modules found: it must use each one
// and replace each one's planned version with its directory.
func (r *repo) checkWork() []string {
	data, err := r.readFile("go.work")
	if err != nil {
		return []string{"go.work: missing; local development needs it (run: go run ./release sync)"}
	}
	wf, err := modfile.ParseWork("go.work", data, nil)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	used := make(map[string]bool)
	for _, u := range wf.Use {
		dir := path.Clean(filepath.ToSlash(u.Path))
		used[dir] = true
		if !slices.ContainsFunc(r.modules, func(m *Module) bool { return m.Dir == dir }) {
			add("go.work: use %s, which is not a module of this repository", u.Path)
		}
	}
	replaced := make(map[string]bool)
	for _, rep := range wf.Replace {
		m := r.module(rep.Old.Path)
		switch {
		case m == nil:
			add("go.work: replace %s: only the repository's own modules may be replaced, or the workspace builds what no user gets", rep.Old.Path)
		case rep.Old.Version != r.version || path.Clean(rep.New.Path) != m.Dir || rep.New.Version != "":
			add("go.work: replace %s %s => %s; want %s %s => %s (run: go run ./release sync)", rep.Old.Path, rep.Old.Version, rep.New.Path, m.Path, r.version, localPath(m.Dir))
		default:
			replaced[m.Path] = true
		}
	}
	for _, m := range r.modules {
		if !used[m.Dir] {
			add("go.work: does not use %s (module %s) (run: go run ./release sync)", localPath(m.Dir), m.Path)
		}
		if !replaced[m.Path] {
			add("go.work: does not replace %s %s with %s (run: go run ./release sync)", m.Path, r.version, localPath(m.Dir))
		}
	}
	return problems
}
