package main

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	modzip "golang.org/x/mod/zip"
)

// A served version is one module version a proxy tree holds, and the git
// revision its files come from.
type served struct {
	path, version string
	rev           string // a tag, or a commit for the planned version
}

// proxyVersions lists what a proxy of the planned release serves: every
// module at each version an existing tag releases, and, unless the release
// is already tagged, every module at the planned version from r.rev.
func (r *repo) proxyVersions(tags []string) []served {
	var out []served
	existing := r.releaseTags(tags)
	_, released := r.plannedTags(tags)
	for _, m := range r.modules {
		for _, v := range existing[m] {
			out = append(out, served{m.Path, v, m.Tag(v)})
		}
		if !released {
			out = append(out, served{m.Path, r.version, r.rev})
		}
	}
	return out
}

// writeProxy writes a module proxy tree into dir, in the layout of go help
// goproxy, for use as GOPROXY=file://DIR: for each module,
// <escaped path>/@v/list and, for each version, .info, .mod and .zip.
// The zips are built the way the go command builds them from a git tag,
// so they hash as the real ones will.
func (r *repo) writeProxy(dir string, versions []served) error {
	lists := make(map[string][]string)
	for _, s := range versions {
		m := r.module(s.path)
		epath, err := module.EscapePath(s.path)
		if err != nil {
			return err
		}
		evers, err := module.EscapeVersion(s.version)
		if err != nil {
			return err
		}
		vdir := filepath.Join(dir, filepath.FromSlash(epath), "@v")
		if err := os.MkdirAll(vdir, 0o755); err != nil {
			return err
		}
		var zbuf bytes.Buffer
		if err := gitModuleZip(&zbuf, r.root, s.rev, m.Dir, s.version); err != nil {
			return fmt.Errorf("%s@%s: %w", s.path, s.version, err)
		}
		gomod, err := git(r.root, "show", s.rev+":"+path.Join(m.Dir, "go.mod"))
		if err != nil {
			return err
		}
		when, err := git(r.root, "log", "-1", "--format=%cI", s.rev)
		if err != nil {
			return err
		}
		t, err := time.Parse(time.RFC3339, strings.TrimSpace(when))
		if err != nil {
			return err
		}
		info, err := json.Marshal(struct {
			Version string
			Time    time.Time
		}{s.version, t.UTC()})
		if err != nil {
			return err
		}
		for ext, data := range map[string][]byte{".zip": zbuf.Bytes(), ".mod": []byte(gomod), ".info": info} {
			if err := os.WriteFile(filepath.Join(vdir, evers+ext), data, 0o644); err != nil {
				return err
			}
		}
		lists[vdir] = append(lists[vdir], s.version)
	}
	for vdir, vs := range lists {
		semver.Sort(vs)
		if err := os.WriteFile(filepath.Join(vdir, "list"), []byte(strings.Join(vs, "\n")+"\n"), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// gitModuleZip writes the module zip of the module in subdir at a git
// revision. It does what the go command does when it fetches a tag
// directly: the files git archive gives (so .gitignore'd and export-ignore
// files stay out), less nested modules, plus the repository's LICENSE when
// the module has none. (golang.org/x/mod/zip.CreateFromVCS does the same
// but refuses a git worktree.)
func gitModuleZip(w io.Writer, root, rev, subdir, version string) error {
	args := []string{"-c", "core.autocrlf=input", "-c", "core.eol=lf", "archive", "--format=zip", rev}
	prefix := ""
	if subdir != "." {
		args = append(args, subdir)
		prefix = subdir + "/"
	}
	out, err := git(root, args...)
	if err != nil {
		return err
	}
	zr, err := zip.NewReader(strings.NewReader(out), int64(len(out)))
	if err != nil {
		return err
	}
	gomod, err := git(root, "show", rev+":"+path.Join(subdir, "go.mod"))
	if err != nil {
		return err
	}
	f, err := parseModFile("go.mod", []byte(gomod))
	if err != nil {
		return err
	}
	var files []modzip.File
	haveLicense := false
	for _, zf := range zr.File {
		name, ok := strings.CutPrefix(zf.Name, prefix)
		if !ok || name == "" || strings.HasSuffix(name, "/") {
			continue
		}
		files = append(files, zipEntry{name, zf})
		haveLicense = haveLicense || name == "LICENSE"
	}
	if !haveLicense && subdir != "." {
		if license, err := git(root, "show", rev+":LICENSE"); err == nil {
			files = append(files, dataFile{"LICENSE", []byte(license)})
		}
	}
	return modzip.Create(w, module.Version{Path: f.Module.Mod.Path, Version: version}, files)
}

// zipEntry is a file of a git archive.
type zipEntry struct {
	name string
	f    *zip.File
}

func (e zipEntry) Path() string                 { return e.name }
func (e zipEntry) Lstat() (fs.FileInfo, error)  { return e.f.FileInfo(), nil }
func (e zipEntry) Open() (io.ReadCloser, error) { return e.f.Open() }

// dataFile is a file held in memory.
type dataFile struct {
	name string
	data []byte
}

func (d dataFile) Path() string                 { return d.name }
func (d dataFile) Lstat() (fs.FileInfo, error)  { return dataInfo{d}, nil }
func (d dataFile) Open() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(d.data)), nil }

type dataInfo struct{ d dataFile }

func (i dataInfo) Name() string       { return path.Base(i.d.name) }
func (i dataInfo) Size() int64        { return int64(len(i.d.data)) }
func (i dataInfo) Mode() fs.FileMode  { return 0o644 }
func (i dataInfo) ModTime() time.Time { return time.Time{} }
func (i dataInfo) IsDir() bool        { return false }
func (i dataInfo) Sys() any           { return nil }
