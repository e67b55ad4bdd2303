package main

import (
	"archive/tar"
	"errors"
	"fmt"
	"go/types"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/exp/apidiff"
	"golang.org/x/mod/semver"
	"golang.org/x/tools/go/packages"
)

// apidiff compares the exported API of each module in the working tree
// with the module's last release tag, using golang.org/x/exp/apidiff (the
// library behind cmd/apidiff and gorelease), and fails when the planned
// version does not allow the changes found (see verdict and RELEASING.md).
//
// With no release tag at all there is nothing to compare with: it says so
// and succeeds. A module with no tag yet is new in the planned release and
// is skipped the same way.
func (r *repo) apidiff(w io.Writer, tags []string) error {
	existing := r.releaseTags(tags)
	if len(existing) == 0 {
		fmt.Fprintf(w, "apidiff: no release tag yet, so no API to compare with: skipped.\n"+
			"The first release, %s, becomes the baseline once tagged (RELEASING.md, \"The first release\").\n", r.version)
		return nil
	}
	// The base of each module: the planned version if it is tagged already
	// (then the comparison only tells what the next version must be), else
	// the highest release before it.
	bases := make(map[*Module]string)
	for _, m := range r.modules {
		for _, v := range existing[m] {
			if semver.Compare(v, r.version) <= 0 {
				bases[m] = v
			}
		}
		if bases[m] == "" {
			fmt.Fprintf(w, "%s: no release tag before %s: new in this release, nothing to compare\n", m.Path, r.version)
		}
	}
	if len(bases) == 0 {
		return nil
	}
	current, err := loadAPI(r.root, r.modules)
	if err != nil {
		return fmt.Errorf("loading the working tree: %w", err)
	}
	tmp, err := os.MkdirTemp("", "saferetry-apidiff-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	// Modules are released together, so most bases share a commit: load
	// each commit once.
	baseAPIs := make(map[string]map[string]*apidiff.Module)
	failed := 0
	for _, m := range r.modules {
		base := bases[m]
		if base == "" {
			continue
		}
		commit, err := git(r.root, "rev-list", "-n", "1", m.Tag(base))
		if err != nil {
			return err
		}
		commit = strings.TrimSpace(commit)
		if baseAPIs[commit] == nil {
			dir := filepath.Join(tmp, commit)
			if err := extract(r.root, commit, dir); err != nil {
				return err
			}
			old, err := loadRepo(dir, "")
			if err != nil {
				return fmt.Errorf("%s: %w", m.Tag(base), err)
			}
			if err := old.writeBaseWork(); err != nil {
				return err
			}
			if baseAPIs[commit], err = loadAPI(dir, old.modules); err != nil {
				return fmt.Errorf("loading %s: %w", m.Tag(base), err)
			}
		}
		oldAPI := baseAPIs[commit][m.Path]
		newAPI := current[m.Path]
		if oldAPI == nil {
			oldAPI = &apidiff.Module{Path: m.Path}
		}
		report := apidiff.ModuleChanges(oldAPI, newAPI)
		var incompatible, compatible []string
		for _, c := range report.Changes {
			if c.Compatible {
				compatible = append(compatible, c.Message)
			} else {
				incompatible = append(incompatible, c.Message)
			}
		}
		ok, why := verdict(base, r.version, len(incompatible) > 0, len(compatible) > 0)
		fmt.Fprintf(w, "%s: compared with %s (%.12s): %d incompatible, %d compatible changes\n",
			m.Path, m.Tag(base), commit, len(incompatible), len(compatible))
		for _, msg := range incompatible {
			fmt.Fprintf(w, "  incompatible: %s\n", msg)
		}
		for _, msg := range compatible {
			fmt.Fprintf(w, "  compatible:   %s\n", msg)
		}
		fmt.Fprintf(w, "  %s\n", why)
		if !ok {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("apidiff: %d module(s) change their API more than %s allows (RELEASING.md, \"API stability\")", failed, r.version)
	}
	return nil
}

// verdict says whether the planned version may follow base given the API
// changes found, by the policy of RELEASING.md: a patch release changes
// no API; before v1 a minor release may change anything; from v1 on, a
// minor release only adds, and an incompatible change needs a new major
// version (a new module path). When planned is base itself (already
// tagged), nothing is decided yet: it says what the next version must be.
func verdict(base, planned string, incompatible, compatible bool) (ok bool, why string) {
	next := minimumNext(base, incompatible, compatible)
	switch c := semver.Compare(planned, base); {
	case c < 0:
		return false, fmt.Sprintf("%s is older than %s", planned, base)
	case c == 0:
		return true, fmt.Sprintf("%s is released; the next release must be at least %s", base, next)
	}
	if semver.Compare(release(planned), next) < 0 {
		return false, fmt.Sprintf("FAIL: %s after %s needs at least %s for these changes", planned, base, next)
	}
	return true, fmt.Sprintf("%s after %s: allowed", planned, base)
}

// minimumNext is the lowest version after base that may carry the changes.
// A prerelease promises nothing, so its own release may carry anything.
func minimumNext(base string, incompatible, compatible bool) string {
	if semver.Prerelease(base) != "" {
		return release(base)
	}
	var major, minor, patch int
	fmt.Sscanf(base, "v%d.%d.%d", &major, &minor, &patch)
	switch {
	case incompatible && major >= 1:
		return fmt.Sprintf("v%d.0.0", major+1)
	case incompatible || compatible:
		return fmt.Sprintf("v%d.%d.0", major, minor+1)
	}
	return fmt.Sprintf("v%d.%d.%d", major, minor, patch+1)
}

// release is a version without its prerelease suffix: v0.2.0 for v0.2.0-rc.1.
func release(v string) string {
	v = semver.Canonical(v)
	return strings.TrimSuffix(v, semver.Prerelease(v))
}

// loadAPI type-checks every importable package of the given modules in the
// workspace rooted at dir and returns each module's API by module path.
// Commands (package main) and internal packages are not API.
func loadAPI(dir string, mods []*Module) (map[string]*apidiff.Module, error) {
	cfg := &packages.Config{
		Mode: packages.NeedName | packages.NeedTypes | packages.NeedModule,
		Dir:  dir,
		Env:  append(os.Environ(), "GOWORK="+filepath.Join(dir, "go.work"), "GOFLAGS=-buildvcs=false"),
	}
	var patterns []string
	for _, m := range mods {
		patterns = append(patterns, m.Path+"/...")
	}
	pkgs, err := packages.Load(cfg, patterns...)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*apidiff.Module)
	for _, m := range mods {
		out[m.Path] = &apidiff.Module{Path: m.Path}
	}
	var errs []error
	for _, p := range pkgs {
		if p.Module == nil || out[p.Module.Path] == nil || p.Name == "main" || isInternal(p.PkgPath) {
			continue
		}
		if len(p.GoFiles) == 0 && len(p.Errors) > 0 && strings.Contains(p.Errors[0].Msg, "no non-test Go files") {
			continue // a directory of tests only
		}
		for _, e := range p.Errors {
			errs = append(errs, fmt.Errorf("%s: %s", p.PkgPath, e.Msg))
		}
		if p.Types != nil && len(p.Errors) == 0 {
			mod := out[p.Module.Path]
			mod.Packages = append(mod.Packages, p.Types)
		}
	}
	for _, m := range out {
		m.Packages = dedup(m.Packages)
	}
	return out, errors.Join(errs...)
}

// dedup drops repeated packages (a pattern of a module and one of a module
// nested in it match the nested module's packages twice).
func dedup(pkgs []*types.Package) []*types.Package {
	seen := make(map[string]bool)
	var out []*types.Package
	for _, p := range pkgs {
		if !seen[p.Path()] {
			seen[p.Path()] = true
			out = append(out, p)
		}
	}
	return out
}

// writeBaseWork writes, into a tree extracted from a release tag, a go.work
// that builds its modules from its own directories whatever versions they
// require of each other (a tree older than this tool may not have one).
func (r *repo) writeBaseWork() error {
	var b strings.Builder
	b.WriteString("go " + r.maxGo() + "\n\nuse (\n")
	for _, m := range r.modules {
		fmt.Fprintf(&b, "\t%s\n", localPath(m.Dir))
	}
	b.WriteString(")\n")
	seen := make(map[string]bool)
	for _, m := range r.modules {
		for _, req := range m.File.Require {
			if dep := r.module(req.Mod.Path); dep != nil && !seen[req.Mod.String()] {
				seen[req.Mod.String()] = true
				fmt.Fprintf(&b, "replace %s %s => %s\n", req.Mod.Path, req.Mod.Version, localPath(dep.Dir))
			}
		}
	}
	return r.writeFile("go.work", []byte(b.String()))
}

// extract writes the tree of a git commit into dir.
func extract(root, commit, dir string) error {
	out, err := git(root, "archive", "--format=tar", commit)
	if err != nil {
		return err
	}
	tr := tar.NewReader(strings.NewReader(out))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		name := path.Clean(h.Name)
		if strings.HasPrefix(name, "../") || path.IsAbs(name) {
			return fmt.Errorf("git archive %s: bad path %q", commit, h.Name)
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				return err
			}
			if err := os.WriteFile(target, data, 0o644); err != nil {
				return err
			}
		}
	}
}
