package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// printPlan prints the tags of the planned release and, for each module,
// the require lines it must carry.
func (r *repo) printPlan(w io.Writer, tags []string) error {
	planned, released := r.plannedTags(tags)
	state := "to be tagged"
	if released {
		state = "already tagged"
	}
	fmt.Fprintf(w, "release %s (%s, from %s), %d modules\n\n", r.version, state, versionFile, len(r.modules))
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "tag\tmodule\tdirectory")
	for _, m := range r.modules {
		tag := m.Tag(r.version)
		if !planned[m] {
			tag = "(none until the next version)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", tag, m.Path, localPath(m.Dir))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nrequires between the modules (each names %s):\n", r.version)
	for _, m := range r.modules {
		for _, req := range m.File.Require {
			if r.module(req.Mod.Path) != nil {
				fmt.Fprintf(w, "  %s/go.mod: require %s %s\n", m.Dir, req.Mod.Path, r.version)
			}
		}
	}
	return nil
}

// runCheck prints check's findings and fails if there is a problem.
func (r *repo) runCheck(w io.Writer, tags []string) error {
	problems, notes := r.check(tags)
	for _, n := range notes {
		fmt.Fprintln(w, "note:", n)
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(w, p)
		}
		return fmt.Errorf("%d problems with release %s", len(problems), r.version)
	}
	fmt.Fprintf(w, "release %s: %d modules, requires, go.sum and go.work agree\n", r.version, len(r.modules))
	return nil
}

// tag creates the planned release's annotated tags at r.rev (HEAD), after
// checking that the working tree is clean, the plan consistent, and no tag
// of it exists yet. It never pushes: it prints the push command.
func (r *repo) tag(w io.Writer, tags []string, dryRun bool) error {
	if problems, _ := r.check(tags); len(problems) > 0 {
		return fmt.Errorf("tag: go run ./release check finds %d problems; fix them first:\n  %s", len(problems), strings.Join(problems, "\n  "))
	}
	if _, released := r.plannedTags(tags); released {
		return fmt.Errorf("tag: release %s is already tagged; set the next version with go run ./release sync -version NEXT", r.version)
	}
	status, err := git(r.root, "status", "--porcelain")
	if err != nil {
		return err
	}
	if strings.TrimSpace(status) != "" {
		return errors.New("tag: the working tree has changes; tag a commit, not a working tree:\n" + status)
	}
	var names []string
	for _, m := range r.modules {
		name := m.Tag(r.version)
		names = append(names, name)
		args := []string{"tag", "-a", "-m", m.Path + " " + r.version, name, r.rev}
		if dryRun {
			fmt.Fprintf(w, "git %s\n", strings.Join(quoteAll(args), " "))
			continue
		}
		if _, err := git(r.root, args...); err != nil {
			return err
		}
		fmt.Fprintf(w, "tagged %s at %s\n", name, r.rev)
	}
	fmt.Fprintf(w, "\nto publish, after go run ./release verify passes:\n  git push origin %s\n", strings.Join(names, " "))
	return nil
}

func quoteAll(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " \t'\"") {
			a = "'" + a + "'"
		}
		out[i] = a
	}
	return out
}
