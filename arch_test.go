package amphi_test

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
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

// TestDependenciesKeepTheArchitecture checks what DESIGN.md and STYLE.md
// promise: the edge never depends on the stage, the mixer or WebRTC; format
// packages use only the standard library; production code never imports
// testing.
func TestDependenciesKeepTheArchitecture(t *testing.T) {
	forbidden := map[string][]string{
		module + "/internal/edge":    {module + "/internal/stage", module + "/internal/mix", module + "/internal/live", "github.com/pion/"},
		module + "/internal/program": {module + "/internal/stage", module + "/internal/mix", "github.com/pion/"},
	}
	stdOnly := map[string]bool{
		module + "/internal/ogg":     true,
		module + "/internal/wav":     true,
		module + "/internal/tone":    true,
		module + "/internal/opuspkt": true,
	}
	for _, p := range packages(t) {
		for _, dep := range p.Deps {
			if dep == "testing" {
				t.Errorf("%s imports testing in production code", p.ImportPath)
			}
			for _, bad := range forbidden[p.ImportPath] {
				if strings.HasPrefix(dep, bad) {
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
