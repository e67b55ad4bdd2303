package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
)

// tidy runs go mod tidy in every module. go mod tidy reads one module
// alone, ignoring go.work (golang/go#50750), and the versions the modules
// require of each other are not published until the release is tagged; so
// for the duration of the command each go.mod gets a replace of every other
// module of the repository by its directory, removed again afterwards,
// with the go.sum lines those modules would have left.
func (r *repo) tidy(stdout, stderr io.Writer) error {
	for _, m := range r.modules {
		fmt.Fprintf(stdout, "go mod tidy in %s\n", localPath(m.Dir))
		if err := r.tidyModule(m, stderr); err != nil {
			return fmt.Errorf("%s: %w", m.Path, err)
		}
	}
	return nil
}

func (r *repo) tidyModule(m *Module, stderr io.Writer) (err error) {
	name := path.Join(m.Dir, "go.mod")
	orig, err := r.readFile(name)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			// Never leave the temporary replaces behind.
			_ = r.writeFile(name, orig)
		}
	}()
	f := m.File
	for _, o := range r.modules {
		if o == m {
			continue
		}
		rel, err := filepath.Rel(filepath.FromSlash(m.Dir), filepath.FromSlash(o.Dir))
		if err != nil {
			return err
		}
		if err := f.AddReplace(o.Path, "", localPath(filepath.ToSlash(rel)), ""); err != nil {
			return err
		}
	}
	data, err := f.Format()
	if err != nil {
		return err
	}
	if err := r.writeFile(name, data); err != nil {
		return err
	}
	cmd := exec.Command("go", "mod", "tidy")
	cmd.Dir = filepath.Join(r.root, filepath.FromSlash(m.Dir))
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		stderr.Write(out.Bytes())
		return fmt.Errorf("go mod tidy: %w", err)
	}
	if data, err = r.readFile(name); err != nil {
		return err
	}
	// A tidy module may have dropped a require; parse what tidy wrote.
	tidied, err := parseModFile(name, data)
	if err != nil {
		return err
	}
	for _, o := range r.modules {
		if o != m {
			if err := tidied.DropReplace(o.Path, ""); err != nil {
				return err
			}
		}
	}
	tidied.Cleanup()
	if data, err = tidied.Format(); err != nil {
		return err
	}
	if err := r.writeFile(name, data); err != nil {
		return err
	}
	m.File = tidied
	return r.stripSum(m)
}
