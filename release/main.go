package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	if err := run1(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "release:", err)
		}
		os.Exit(1)
	}
}

const usage = `usage: go run ./release COMMAND [flags]

  modules            list the modules found (every go.mod outside testdata, vendor, _ and . directories)
  plan               the tags the planned release creates and the require lines it needs
  check              fail if a go.mod, go.sum or go.work disagrees with the plan
  sync [-version v]  set the planned version; rewrite requires, go.sum and go.work to match
  tidy               go mod tidy every module against the repository's own modules
  proxy -dir d       write a GOPROXY=file://d tree of the planned release, from HEAD
  verify             build that proxy, then go get, build and install every module from scratch
  apidiff            compare each module's exported API with its last release tag
  tag [-n]           create the planned release's tags at HEAD, locally; never pushes

RELEASING.md describes the procedure.
`

// run1 runs one command; it is main without the exit.
func run1(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	cmd, args := args[0], args[1:]
	fl := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fl.SetOutput(stderr)
	cwd, err := os.Getwd()
	if err != nil {
		return err
	}
	dirFlag := fl.String("C", cwd, "a directory inside the repository")
	var (
		version  = new(string)
		dir      = new(string)
		dryRun   = new(bool)
		keep     = new(bool)
		modcache = new(string)
		upstream = new(string)
	)
	switch cmd {
	case "sync":
		fl.StringVar(version, "version", "", "the planned version (default: the one in "+versionFile+")")
	case "proxy":
		fl.StringVar(dir, "dir", "", "directory to write the proxy tree into (required)")
	case "verify":
		fl.StringVar(dir, "dir", "", "scratch directory (default: a new temporary one, removed afterwards)")
		fl.BoolVar(keep, "keep", false, "keep the scratch directory")
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		fl.StringVar(modcache, "modcache", filepath.Join(cache, "saferetry-release", "modcache"),
			"GOMODCACHE of the scratch builds; this repository's modules are removed from it first")
		fl.StringVar(upstream, "upstream", defaultUpstream(), "GOPROXY entries for modules of other repositories")
	case "tag":
		fl.BoolVar(dryRun, "n", false, "print the git commands instead of running them")
	case "modules", "plan", "check", "tidy", "apidiff":
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("%s: unexpected arguments %q", cmd, fl.Args())
	}
	root, err := repoRoot(*dirFlag)
	if err != nil {
		return err
	}
	rev := ""
	switch cmd {
	case "proxy", "verify", "tag":
		// What is served or tagged is a commit, never the working tree.
		if rev, err = git(root, "rev-parse", "HEAD"); err != nil {
			return err
		}
		rev = strings.TrimSpace(rev)
	}
	r, err := loadRepo(root, rev)
	if err != nil {
		return err
	}
	tags, err := gitTags(root)
	if err != nil {
		return err
	}
	switch cmd {
	case "modules":
		for _, m := range r.modules {
			fmt.Fprintf(stdout, "%-16s %s\n", localPath(m.Dir), m.Path)
		}
		return nil
	case "plan":
		return r.printPlan(stdout, tags)
	case "check":
		return r.runCheck(stdout, tags)
	case "sync":
		v := *version
		if v == "" {
			v = r.version
		}
		if err := r.sync(v); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "planned version %s written to %s, the go.mod files, go.sum files and go.work\n", v, versionFile)
		return nil
	case "tidy":
		return r.tidy(stdout, stderr)
	case "proxy":
		if *dir == "" {
			return errors.New("proxy: -dir is required")
		}
		abs, err := filepath.Abs(*dir)
		if err != nil {
			return err
		}
		vs := r.proxyVersions(tags)
		if err := r.writeProxy(abs, vs); err != nil {
			return err
		}
		for _, s := range vs {
			fmt.Fprintf(stdout, "%s@%s\t(from %s)\n", s.path, s.version, s.rev)
		}
		fmt.Fprintf(stdout, "GOPROXY=file://%s,%s GONOSUMDB=%s\n", filepath.ToSlash(abs), defaultUpstream(), r.rootPath)
		return nil
	case "verify":
		if problems, _ := r.check(tags); len(problems) > 0 {
			return fmt.Errorf("verify: the plan is inconsistent at HEAD; go run ./release check says:\n  %s", strings.Join(problems, "\n  "))
		}
		work := *dir
		if work == "" {
			if work, err = os.MkdirTemp("", "saferetry-verify-"); err != nil {
				return err
			}
			if !*keep {
				defer os.RemoveAll(work)
			}
		}
		if work, err = filepath.Abs(work); err != nil {
			return err
		}
		cache, err := filepath.Abs(*modcache)
		if err != nil {
			return err
		}
		return r.verify(tags, verifyConfig{work: work, modcache: cache, upstream: *upstream, stdout: stdout})
	case "apidiff":
		return r.apidiff(stdout, tags)
	case "tag":
		return r.tag(stdout, tags, *dryRun)
	}
	return nil
}

// defaultUpstream is where modules of other repositories come from: the
// local module cache's download directory first (it has the proxy layout,
// and spares the network), then the configured GOPROXY.
func defaultUpstream() string {
	upstream := goEnv("GOPROXY")
	if upstream == "" || upstream == "off" {
		upstream = "https://proxy.golang.org"
	}
	if cache := goEnv("GOMODCACHE"); cache != "" {
		upstream = "file://" + filepath.ToSlash(filepath.Join(cache, "cache", "download")) + "," + upstream
	}
	return upstream
}

// goEnv reads one go env variable, or "".
func goEnv(name string) string {
	out, err := run(".", os.Environ(), "go", "env", name)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(out)
}
