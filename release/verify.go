package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/module"
)

// verifyConfig says where verify works and what it tries.
type verifyConfig struct {
	work     string // scratch directory: the proxy tree, one scratch module per module, installed binaries
	modcache string // GOMODCACHE for the scratch builds, emptied first
	upstream string // GOPROXY entries after the local tree, for everything not of this repository
	stdout   io.Writer
}

// verify proves that the planned release resolves for someone outside the
// repository. It writes a proxy tree of the release (see writeProxy) and
// then, for each module, from a new scratch module and with no go.work,
// runs go get on the module's packages at the planned version, builds a
// program importing every importable package of it with -mod=readonly (so
// go get must have left a complete go.mod and go.sum), and go installs each
// of its commands by version, as a user would.
//
// The scratch builds use their own module cache, from which every module of
// this repository is removed first, so that no earlier run's copy of a
// version stands in for this one; modules of other repositories come from
// upstream and stay cached, as do their compiled packages in the build
// cache, which keys them by directory.
func (r *repo) verify(tags []string, cfg verifyConfig) error {
	proxyDir := filepath.Join(cfg.work, "proxy")
	versions := r.proxyVersions(tags)
	if err := r.writeProxy(proxyDir, versions); err != nil {
		return err
	}
	fmt.Fprintf(cfg.stdout, "proxy: %d module versions from %s in %s\n", len(versions), r.rev, proxyDir)
	env := append(os.Environ(),
		"GOPROXY=file://"+filepath.ToSlash(proxyDir)+","+cfg.upstream,
		"GONOSUMDB="+r.rootPath,                   // not published: sum.golang.org cannot know them
		"GOPRIVATE=", "GONOPROXY=", "GOINSECURE=", // GOPRIVATE would send the module to git, not the proxy
		"GOWORK=off",
		"GOFLAGS=-mod=mod",
		"GOMODCACHE="+cfg.modcache,
		"GOBIN="+filepath.Join(cfg.work, "bin"),
		// The go command indexes the packages of a module-cache directory
		// once, in GOCACHE, keyed by the directory alone: module versions
		// never change. Here the same version is rebuilt from a new
		// commit at the same path, so the index would describe an older
		// run's tree.
		"GODEBUG="+strings.TrimPrefix(os.Getenv("GODEBUG")+",goindex=0", ","),
	)
	if err := forgetModules(cfg.modcache, r.rootPath); err != nil {
		return err
	}
	_, released := r.plannedTags(tags)
	for _, m := range r.modules {
		if released && !slices.Contains(tags, m.Tag(r.version)) {
			fmt.Fprintf(cfg.stdout, "%s: no tag %s, skipped\n", m.Path, m.Tag(r.version))
			continue
		}
		start := time.Now()
		if err := r.verifyModule(m, env, cfg); err != nil {
			return fmt.Errorf("%s@%s: %w", m.Path, r.version, err)
		}
		fmt.Fprintf(cfg.stdout, "  %s (%.1fs)\n", m.Path, time.Since(start).Seconds())
	}
	return nil
}

func (r *repo) verifyModule(m *Module, env []string, cfg verifyConfig) error {
	dir := filepath.Join(cfg.work, "scratch", strings.ReplaceAll(m.Dir, "/", "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	steps := func(args ...string) error {
		fmt.Fprintf(cfg.stdout, "  $ %s\n", strings.Join(args, " "))
		_, err := run(dir, env, args[0], args[1:]...)
		return err
	}
	if err := steps("go", "mod", "init", "example.com/scratch"); err != nil {
		return err
	}
	if err := steps("go", "get", m.Path+"/...@"+r.version); err != nil {
		return err
	}
	out, err := run(dir, env, "go", "list", "-f", "{{.ImportPath}} {{.Name}} {{with .Module}}{{.Path}}{{end}}", m.Path+"/...")
	if err != nil {
		return err
	}
	var libs, cmds []string
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) != 3 || f[2] != m.Path || isInternal(f[0]) {
			continue
		}
		if f[1] == "main" {
			cmds = append(cmds, f[0])
		} else {
			libs = append(libs, f[0])
		}
	}
	if len(libs)+len(cmds) == 0 {
		return fmt.Errorf("go list %s/... found no package", m.Path)
	}
	if len(libs) > 0 {
		var src strings.Builder
		src.WriteString("// Command scratch imports every package of one module, as a user would.\npackage main\n\nimport (\n")
		for _, p := range libs {
			fmt.Fprintf(&src, "\t_ %q\n", p)
		}
		src.WriteString(")\n\nfunc main() {}\n")
		if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src.String()), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(cfg.stdout, "  main.go imports %s\n", strings.Join(libs, ", "))
		if err := steps("go", "build", "-mod=readonly", "-o", os.DevNull, "."); err != nil {
			return err
		}
	}
	for _, c := range cmds {
		// go install pkg@version builds outside any main module, with
		// the command's own go.mod: no replace directive may remain.
		if err := steps("go", "install", c+"@"+r.version); err != nil {
			return err
		}
	}
	return nil
}

// isInternal reports whether an import path has an internal element, and
// so cannot be imported from outside its module.
func isInternal(importPath string) bool {
	return slices.Contains(strings.Split(importPath, "/"), "internal")
}

// run runs a command and returns its standard output; on failure the error
// carries everything it printed.
func run(dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// forgetModules removes from a module cache every module whose path is
// rootPath or under it: the extracted trees and the downloads. The go
// command makes them read-only, so write permission is restored first.
func forgetModules(modcache, rootPath string) error {
	epath, err := module.EscapePath(rootPath)
	if err != nil {
		return err
	}
	parent := filepath.Join(modcache, filepath.FromSlash(path.Dir(epath)))
	base := path.Base(epath)
	targets := []string{filepath.Join(modcache, "cache", "download", filepath.FromSlash(epath))}
	entries, err := os.ReadDir(parent)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, e := range entries {
		if e.Name() == base || strings.HasPrefix(e.Name(), base+"@") {
			targets = append(targets, filepath.Join(parent, e.Name()))
		}
	}
	for _, t := range targets {
		_ = filepath.WalkDir(t, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(p, 0o755)
			}
			return nil
		})
		if err := os.RemoveAll(t); err != nil {
			return err
		}
	}
	return nil
}
