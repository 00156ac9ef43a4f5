package amphi_test

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/amphi-audio/amphi"

type goPackage struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	CgoFiles   []string
	Deps       []string
	Standard   bool
}

// packages lists the module's packages with their transitive imports
// (production code only: test files are not in Deps).
func packages(t *testing.T) []goPackage {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps=false", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []goPackage
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p goPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// stdlib reports whether an import path is in Go's standard library: its
// first element has no dot.
func stdlib(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".") && path != "C"
}

// serverPackages run only inside `amphi serve`; clients of its protocols
// reach them over the network, never by importing them.
var serverPackages = []string{
	module + "/internal/api", module + "/internal/edge", module + "/internal/live",
	module + "/internal/stage", module + "/internal/mix", module + "/internal/record",
	module + "/internal/store", module + "/internal/account", module + "/internal/ops",
	module + "/internal/web", module + "/internal/space",
}

// depends reports whether dep is the package bad or lies under it; a bad
// ending in "/" names a prefix of import paths, such as a module.
func depends(dep, bad string) bool {
	return dep == bad || strings.HasPrefix(dep, strings.TrimSuffix(bad, "/")+"/")
}

// TestDependenciesKeepTheArchitecture checks what DESIGN.md, STYLE.md and
// docs/ARCHITECTURE.md promise: the edge never depends on the stage, the
// mixer or WebRTC; the gate is pure logic and space is domain, both without
// net/http; the clients (load, attack, client) never depend on a server
// package; format packages use only the standard library; production code
// never imports testing.
// A rule naming a package of the module that no longer exists fails too,
// so the rules cannot go stale unnoticed.
func TestDependenciesKeepTheArchitecture(t *testing.T) {
	forbidden := map[string][]string{
		module + "/internal/edge":    {module + "/internal/stage", module + "/internal/mix", module + "/internal/live", "github.com/pion/"},
		module + "/internal/program": {module + "/internal/stage", module + "/internal/mix", "github.com/pion/"},
		module + "/internal/gate":    {"net/http"},
		module + "/internal/space":   {"net/http"},
		module + "/internal/load":    serverPackages,
		module + "/internal/attack":  serverPackages,
		module + "/internal/client":  serverPackages,
		// HLS is a format served by edges: no server package in it.
		module + "/internal/hls": serverPackages,
	}
	stdOnly := map[string]bool{
		module + "/internal/ogg":     true,
		module + "/internal/wav":     true,
		module + "/internal/tone":    true,
		module + "/internal/opuspkt": true,
		module + "/internal/fmp4":    true,
	}
	pkgs := packages(t)
	exists := map[string]bool{}
	for _, p := range pkgs {
		exists[p.ImportPath] = true
	}
	named := slices.Concat(slices.Collect(maps.Keys(forbidden)), slices.Collect(maps.Keys(stdOnly)))
	for _, bad := range forbidden {
		named = append(named, bad...)
	}
	for _, path := range named {
		if strings.HasPrefix(path, module+"/") && !exists[path] {
			t.Errorf("a rule names %s, which is not a package of the module: update the rule", path)
		}
	}
	for _, p := range pkgs {
		for _, dep := range p.Deps {
			if dep == "testing" {
				t.Errorf("%s imports testing in production code", p.ImportPath)
			}
			for _, bad := range forbidden[p.ImportPath] {
				if depends(dep, bad) {
					t.Errorf("%s depends on %s", p.ImportPath, dep)
				}
			}
			if stdOnly[p.ImportPath] && !stdlib(dep) {
				t.Errorf("%s is a format package but depends on %s", p.ImportPath, dep)
			}
		}
	}
}

// TestEveryPackageHasOneDocComment keeps package documentation in one place
// per package.
func TestEveryPackageHasOneDocComment(t *testing.T) {
	for _, p := range packages(t) {
		var docs []string
		for _, f := range append(p.GoFiles, p.CgoFiles...) {
			path := filepath.Join(p.Dir, f)
			file, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if file.Doc != nil {
				docs = append(docs, f)
			}
		}
		if len(docs) != 1 {
			t.Errorf("%s has %d package doc comments (%v), want exactly 1", p.ImportPath, len(docs), docs)
		}
	}
}
