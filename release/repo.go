package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/semver"
)

// versionFile holds the version of the planned release, relative to the
// repository root.
const versionFile = "release/VERSION"

// A Module is one go.mod of the repository.
type Module struct {
	Dir  string        // slash-separated directory relative to the repository root; "." for the root
	Path string        // the module path its go.mod declares
	File *modfile.File // its go.mod, parsed
}

// Tag is the name of the git tag that releases the module at version v:
// "v" itself for the root module, "DIR/v" for the others, as the go
// command expects of a module in a subdirectory.
func (m *Module) Tag(v string) string {
	return m.TagPrefix() + v
}

// TagPrefix is what precedes the version in the module's tags.
func (m *Module) TagPrefix() string {
	if m.Dir == "." {
		return ""
	}
	return m.Dir + "/"
}

// A repo is the repository as seen at one revision, or in the working tree
// when rev is empty.
type repo struct {
	root     string    // absolute path of the top directory
	rev      string    // git revision the modules were read at; "" for the working tree
	version  string    // the planned version, from versionFile
	rootPath string    // module path of the root module
	modules  []*Module // the root module first, then by directory
}

// loadRepo reads the modules and the planned version of the repository at
// root, from the working tree (rev == "") or from a git revision.
func loadRepo(root, rev string) (*repo, error) {
	r := &repo{root: root, rev: rev}
	files, err := r.goModFiles()
	if err != nil {
		return nil, err
	}
	for _, name := range files {
		data, err := r.readFile(name)
		if err != nil {
			return nil, err
		}
		f, err := parseModFile(name, data)
		if err != nil {
			return nil, err
		}
		r.modules = append(r.modules, &Module{Dir: path.Dir(name), Path: f.Module.Mod.Path, File: f})
	}
	slices.SortFunc(r.modules, func(a, b *Module) int {
		if a.Dir == "." || b.Dir == "." {
			return boolInt(b.Dir == ".") - boolInt(a.Dir == ".")
		}
		return strings.Compare(a.Dir, b.Dir)
	})
	if len(r.modules) == 0 || r.modules[0].Dir != "." {
		return nil, fmt.Errorf("%s: no go.mod at the repository root", root)
	}
	r.rootPath = r.modules[0].Path
	// A tree from before this tool has no version file; check reports it.
	data, err := r.readFile(versionFile)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading the planned version: %w", err)
	}
	r.version = strings.TrimSpace(string(data))
	return r, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// skipDir reports whether a directory is outside every module the go command
// would build: it ignores directories named testdata or vendor and those
// starting with "." or "_" (go help packages), so a go.mod there is a test
// fixture, not a module of the repository.
func skipDir(name string) bool {
	return name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")
}

// goModFiles lists the slash-separated paths of the repository's go.mod
// files, relative to its root.
func (r *repo) goModFiles() ([]string, error) {
	var names []string
	if r.rev != "" {
		out, err := git(r.root, "ls-tree", "-r", "--name-only", "-z", r.rev)
		if err != nil {
			return nil, err
		}
	files:
		for name := range strings.SplitSeq(strings.TrimRight(out, "\x00"), "\x00") {
			if path.Base(name) != "go.mod" {
				continue
			}
			for _, elem := range strings.Split(path.Dir(name), "/") {
				if elem != "." && skipDir(elem) {
					continue files
				}
			}
			names = append(names, name)
		}
		return names, nil
	}
	err := filepath.WalkDir(r.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != r.root && skipDir(d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Name() == "go.mod" {
			rel, err := filepath.Rel(r.root, p)
			if err != nil {
				return err
			}
			names = append(names, filepath.ToSlash(rel))
		}
		return nil
	})
	return names, err
}

// readFile reads a file of the repository by its slash-separated path.
func (r *repo) readFile(name string) ([]byte, error) {
	if r.rev == "" {
		return os.ReadFile(filepath.Join(r.root, filepath.FromSlash(name)))
	}
	out, err := git(r.root, "show", r.rev+":"+name)
	return []byte(out), err
}

// module returns the repository's module with the given path, or nil.
func (r *repo) module(modPath string) *Module {
	for _, m := range r.modules {
		if m.Path == modPath {
			return m
		}
	}
	return nil
}

// ours reports whether a module path is under the root module's path, that
// is, whether this repository would have to provide it.
func (r *repo) ours(modPath string) bool {
	return modPath == r.rootPath || strings.HasPrefix(modPath, r.rootPath+"/")
}

// releaseTags returns, for each module, the versions its existing tags
// release, in semver order. Tags that are not a module's prefix followed
// by a valid semantic version are ignored.
func (r *repo) releaseTags(tags []string) map[*Module][]string {
	out := make(map[*Module][]string)
	for _, t := range tags {
		m, v := r.tagModule(t)
		if m != nil {
			out[m] = append(out[m], v)
		}
	}
	for m := range out {
		semver.Sort(out[m])
	}
	return out
}

// tagModule returns the module and version a tag releases, or nil.
func (r *repo) tagModule(tag string) (*Module, string) {
	for _, m := range r.modules {
		v, ok := strings.CutPrefix(tag, m.TagPrefix())
		if ok && semver.IsValid(v) && !strings.Contains(v, "/") {
			return m, v
		}
	}
	return nil, ""
}

// git runs git in dir and returns its standard output.
func git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// gitTags lists the repository's tags.
func gitTags(root string) ([]string, error) {
	out, err := git(root, "tag", "--list")
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

// repoRoot finds the top directory of the git repository containing dir.
func repoRoot(dir string) (string, error) {
	out, err := git(dir, "rev-parse", "--show-toplevel")
	if err != nil {
		return "", errors.New("not inside a git repository: " + err.Error())
	}
	return strings.TrimSpace(out), nil
}

// parseModFile parses a go.mod, insisting on its module line.
func parseModFile(name string, data []byte) (*modfile.File, error) {
	f, err := modfile.Parse(name, data, nil)
	if err != nil {
		return nil, err
	}
	if f.Module == nil {
		return nil, fmt.Errorf("%s: no module line", name)
	}
	return f, nil
}
