package main

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/semver"
)

// sync makes the working tree agree with a planned version: it writes the
// version to versionFile, sets every require of one of the repository's
// modules by another to it, drops such lines from go.sum, and rewrites
// go.work to use every module and replace each one's planned version with
// its directory. It leaves everything else of each file as it was.
func (r *repo) sync(version string) error {
	if r.rev != "" {
		return errors.New("sync writes the working tree, not a revision")
	}
	if !semver.IsValid(version) || semver.Canonical(version) != version {
		return fmt.Errorf("%q is not a canonical semantic version such as v0.1.0", version)
	}
	r.version = version
	if err := r.writeFile(versionFile, []byte(version+"\n")); err != nil {
		return err
	}
	for _, m := range r.modules {
		changed := false
		for _, req := range m.File.Require {
			if r.module(req.Mod.Path) != nil && req.Mod.Version != version {
				if err := m.File.AddRequire(req.Mod.Path, version); err != nil {
					return err
				}
				changed = true
			}
		}
		for _, rep := range m.File.Replace {
			if r.ours(rep.Old.Path) {
				if err := m.File.DropReplace(rep.Old.Path, rep.Old.Version); err != nil {
					return err
				}
				changed = true
			}
		}
		if changed {
			m.File.Cleanup()
			data, err := m.File.Format()
			if err != nil {
				return err
			}
			if err := r.writeFile(path.Join(m.Dir, "go.mod"), data); err != nil {
				return err
			}
		}
		if err := r.stripSum(m); err != nil {
			return err
		}
	}
	return r.writeWork()
}

// stripSum removes the go.sum lines of the repository's own modules.
func (r *repo) stripSum(m *Module) error {
	name := path.Join(m.Dir, "go.sum")
	data, err := r.readFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	var kept strings.Builder
	for line := range strings.Lines(string(data)) {
		if f := strings.Fields(line); len(f) == 3 && r.ours(f[0]) {
			continue
		}
		kept.WriteString(line)
	}
	if kept.Len() == len(data) {
		return nil
	}
	return r.writeFile(name, []byte(kept.String()))
}

// writeWork writes go.work for the modules found, keeping its go and
// toolchain lines.
func (r *repo) writeWork() error {
	goLine, toolchain := "", ""
	if data, err := r.readFile("go.work"); err == nil {
		wf, err := modfile.ParseWork("go.work", data, nil)
		if err != nil {
			return err
		}
		if wf.Go != nil {
			goLine = wf.Go.Version
		}
		if wf.Toolchain != nil {
			toolchain = wf.Toolchain.Name
		}
	}
	if goLine == "" {
		goLine = r.maxGo()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "go %s\n", goLine)
	if toolchain != "" {
		fmt.Fprintf(&b, "\ntoolchain %s\n", toolchain)
	}
	b.WriteString("\nuse (\n")
	for _, m := range r.modules {
		fmt.Fprintf(&b, "\t%s\n", localPath(m.Dir))
	}
	b.WriteString(")\n\n")
	b.WriteString("// Written by `go run ./release sync`. The go.mod files require each other at\n")
	b.WriteString("// the planned release version, which is not tagged yet; a workspace module\n")
	b.WriteString("// does not stand in for every version of itself (golang/go#66516), so each\n")
	b.WriteString("// planned version is replaced with its directory.\n")
	b.WriteString("replace (\n")
	for _, m := range r.modules {
		fmt.Fprintf(&b, "\t%s %s => %s\n", m.Path, r.version, localPath(m.Dir))
	}
	b.WriteString(")\n")
	// Round-trip through the parser so that the file is exactly what go
	// work edit would format.
	wf, err := modfile.ParseWork("go.work", []byte(b.String()), nil)
	if err != nil {
		return err
	}
	return r.writeFile("go.work", modfile.Format(wf.Syntax))
}

// maxGo is the highest go line of the modules: the least a workspace of
// all of them can say.
func (r *repo) maxGo() string {
	v := "1.21"
	for _, m := range r.modules {
		if m.File.Go != nil && semver.Compare(gover(m.File.Go.Version), gover(v)) > 0 {
			v = m.File.Go.Version
		}
	}
	return v
}

// localPath is how go.work and go.mod spell a directory of the repository.
func localPath(dir string) string {
	if dir == "." {
		return "."
	}
	return "./" + dir
}

// gover makes a go directive's version comparable as a semantic version.
func gover(v string) string {
	if strings.Count(v, ".") == 1 {
		v += ".0"
	}
	return "v" + v
}

func (r *repo) writeFile(name string, data []byte) error {
	return os.WriteFile(filepath.Join(r.root, filepath.FromSlash(name)), data, 0o644)
}
