// Command release keeps the modules of this repository releasable as a
// set, and proves that a release would resolve for someone outside it.
//
// The repository holds several Go modules (every go.mod is one: the core
// at the root, keystore, and whatever is added later). Outside the
// repository only published versions count: a `replace` directive is
// ignored, go.work is ignored, and a require of a version that was never
// tagged can never be resolved. So every module of the repository is
// released together at one version, vX.Y.Z, tagged "vX.Y.Z" for the root
// module and "DIR/vX.Y.Z" for the module in DIR, and every require of one
// module of the repository by another names exactly that version. The
// version lives in release/VERSION. Modules are found, never listed: a new
// go.mod joins the release by existing.
//
// The requires name a version that does not exist until it is tagged, and a
// workspace module only roots the build rather than replacing every
// version of itself (golang/go#66516), so go.work also replaces each
// module's planned version with its directory. That is what keeps local
// development working; sync writes it.
//
// Usage, from anywhere in the repository:
//
//	go run ./release modules           list the modules found
//	go run ./release plan              the tags and require lines of the planned release
//	go run ./release check             fail if a go.mod, go.sum or go.work disagrees with the plan (CI)
//	go run ./release sync [-version v] set the version, rewrite requires, go.sum and go.work
//	go run ./release tidy              go mod tidy every module against the repository's own modules
//	go run ./release proxy -dir d      write a GOPROXY=file:// tree of the planned release (from HEAD)
//	go run ./release verify            build that proxy, then go get and build every module from scratch (CI)
//	go run ./release apidiff           compare each module's API with its last release tag (CI)
//	go run ./release tag [-n]          create the planned release's tags at HEAD, locally; never pushes
//
// RELEASING.md at the repository root is the procedure that uses them.
package main
