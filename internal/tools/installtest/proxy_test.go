package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/module"
	"golang.org/x/mod/zip"
)

// TestWriteProxy builds the proxy from the work tree and checks each
// module's files as the go command will read them: a valid module zip
// holding the module's own files only (no file of a nested module), the
// go.mod beside it, the .info with the version.
func TestWriteProxy(t *testing.T) {
	out, err := git(".", "rev-parse", "--show-toplevel")
	if err != nil {
		t.Fatal(err)
	}
	repo := strings.TrimSpace(string(out))
	tree, err := ExportWorktree(repo, filepath.Join(t.TempDir(), "tree"))
	if err != nil {
		t.Fatal(err)
	}
	if err := tree.CheckModules(); err != nil {
		t.Fatal(err)
	}
	proxy := t.TempDir()
	const version = "v0.9.8"
	if err := tree.WriteProxy(proxy, version); err != nil {
		t.Fatal(err)
	}
	for _, m := range Released {
		mv := module.Version{Path: m.Path, Version: version}
		esc, _ := module.EscapePath(m.Path)
		vdir := filepath.Join(proxy, filepath.FromSlash(esc), "@v")
		cf, err := zip.CheckZip(mv, filepath.Join(vdir, version+".zip"))
		if err != nil {
			t.Fatalf("%s: %v", mv, err)
		}
		hasGoMod, hasLicense := false, false
		for _, f := range cf.Valid {
			f = strings.TrimPrefix(f, m.Path+"@"+version+"/")
			hasGoMod = hasGoMod || f == "go.mod"
			hasLicense = hasLicense || f == "LICENSE"
			if m.Dir != "" {
				continue // no module is nested in a nested module
			}
			var nested []string
			for _, o := range Released[1:] {
				nested = append(nested, o.Dir)
			}
			for _, nested := range append(nested, unreleased...) {
				if strings.HasPrefix(f, nested+"/") {
					t.Errorf("%s: the zip holds %s, a file of the module in %s", mv, f, nested)
				}
			}
		}
		if !hasGoMod || !hasLicense {
			t.Errorf("%s: go.mod in zip %v, LICENSE in zip %v", mv, hasGoMod, hasLicense)
		}
		mod, err := os.ReadFile(filepath.Join(vdir, version+".mod"))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := os.ReadFile(filepath.Join(repo, m.Dir, "go.mod"))
		if !bytes.Equal(mod, want) {
			t.Errorf("%s: the .mod is not the module's go.mod", mv)
		}
		var info struct{ Version string }
		data, err := os.ReadFile(filepath.Join(vdir, version+".info"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &info); err != nil || info.Version != version {
			t.Errorf("%s: .info %s (%v)", mv, data, err)
		}
		if list, _ := os.ReadFile(filepath.Join(vdir, "list")); string(list) != version+"\n" {
			t.Errorf("%s: list %q", mv, list)
		}
	}
}

// TestCheckModulesRefusesAnUnknownModule: a new nested module that is
// neither released nor listed would silently be left out of a release.
func TestCheckModulesRefusesAnUnknownModule(t *testing.T) {
	dir := t.TempDir()
	for _, m := range Released {
		if err := writeFile(filepath.Join(dir, m.Dir, "go.mod"), strings.NewReader("module "+m.Path+"\n")); err != nil {
			t.Fatal(err)
		}
	}
	tree := &Tree{Dir: dir}
	if err := tree.CheckModules(); err != nil {
		t.Fatalf("the released modules alone: %v", err)
	}
	if err := writeFile(filepath.Join(dir, "adapters", "newbroker", "go.mod"), strings.NewReader("module github.com/mqttauth/mqttauth/adapters/newbroker\n")); err != nil {
		t.Fatal(err)
	}
	err := tree.CheckModules()
	if err == nil || !strings.Contains(err.Error(), "adapters/newbroker/go.mod") {
		t.Fatalf("an unlisted module: %v, want an error naming adapters/newbroker/go.mod", err)
	}
}
