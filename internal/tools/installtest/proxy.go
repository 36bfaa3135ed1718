package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/zip"
)

// Module is one released module: its path and its directory in the
// repository ("" for the root).
type Module struct {
	Path string
	Dir  string
}

// Released are the modules a release tags, in the order their tags are
// cut: each requires only modules before it. scripts/release and
// scripts/apicheck read this list (installtest -list): a new module is
// added here.
var Released = []Module{
	{"github.com/mqttauth/mqttauth", ""},
	{"github.com/mqttauth/mqttauth/adapters/mochi", "adapters/mochi"},
	{"github.com/mqttauth/mqttauth/adapters/nats", "adapters/nats"},
	{"github.com/mqttauth/mqttauth/metrics/prometheus", "metrics/prometheus"},
	{"github.com/mqttauth/mqttauth/examples", "examples"},
}

// unreleased are the directories of modules that are never tagged.
var unreleased = []string{"internal/tools"}

// Tree is a copy of the repository's files as a tag would name them.
type Tree struct {
	Dir  string    // where the files are
	Time time.Time // the commit's time (now for a work tree)
}

// ExportRev copies the files of revision rev of the repository at repo
// into dir, with git archive (the files the go command would see at a tag
// naming rev).
func ExportRev(repo, rev, dir string) (*Tree, error) {
	out, err := git(repo, "log", "-1", "--format=%cI", rev)
	if err != nil {
		return nil, err
	}
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(string(out)))
	if err != nil {
		return nil, fmt.Errorf("installtest: commit time of %s: %w", rev, err)
	}
	archive, err := git(repo, "-c", "core.autocrlf=input", "-c", "core.eol=lf", "archive", "--format=tar", rev)
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("installtest: git archive: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue // directories are made below; links are not allowed in module zips
		}
		if err := writeFile(filepath.Join(dir, filepath.FromSlash(h.Name)), tr); err != nil {
			return nil, err
		}
	}
	return &Tree{Dir: dir, Time: t.UTC()}, nil
}

// ExportWorktree copies the files of the work tree at repo that git does
// not ignore (tracked or not) into dir.
func ExportWorktree(repo, dir string) (*Tree, error) {
	out, err := git(repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	if err != nil {
		return nil, err
	}
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		src := filepath.Join(repo, filepath.FromSlash(name))
		fi, err := os.Lstat(src)
		if errors.Is(err, os.ErrNotExist) {
			continue // deleted, not yet committed
		}
		if err != nil {
			return nil, fmt.Errorf("installtest: %w", err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		f, err := os.Open(src)
		if err != nil {
			return nil, fmt.Errorf("installtest: %w", err)
		}
		err = writeFile(filepath.Join(dir, filepath.FromSlash(name)), f)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	return &Tree{Dir: dir, Time: time.Now().UTC().Truncate(time.Second)}, nil
}

func writeFile(name string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return fmt.Errorf("installtest: %w", err)
	}
	f, err := os.Create(name)
	if err != nil {
		return fmt.Errorf("installtest: %w", err)
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("installtest: %w", err)
	}
	return f.Close()
}

// CheckModules returns an error unless the tree has the go.mod files of
// Released, each declaring its path, and no other module than those and
// unreleased.
func (t *Tree) CheckModules() error {
	want := map[string]string{}
	for _, m := range Released {
		want[path.Join(m.Dir, "go.mod")] = m.Path
	}
	for _, d := range unreleased {
		want[path.Join(d, "go.mod")] = ""
	}
	var errs []error
	found := map[string]bool{}
	err := filepath.WalkDir(t.Dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "go.mod" {
			return err
		}
		rel, _ := filepath.Rel(t.Dir, p)
		rel = filepath.ToSlash(rel)
		found[rel] = true
		mpath, ok := want[rel]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: a module that is neither released nor listed as unreleased (installtest's Released)", rel))
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		f, err := modfile.ParseLax(rel, data, nil)
		if err != nil {
			return err
		}
		if mpath != "" && f.Module.Mod.Path != mpath {
			errs = append(errs, fmt.Errorf("%s: module %s, want %s", rel, f.Module.Mod.Path, mpath))
		}
		if mpath != "" && len(f.Replace) > 0 {
			// Not refused here: the consumer below shows what it does to a
			// user (Go ignores replace directives in dependencies).
			fmt.Printf("installtest: warning: %s has replace directives, which Go ignores for a user of the module\n", rel)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("installtest: %w", err)
	}
	for _, m := range Released {
		if name := path.Join(m.Dir, "go.mod"); !found[name] {
			errs = append(errs, fmt.Errorf("%s: missing", name))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("installtest: modules: %w", errors.Join(errs...))
	}
	return nil
}

// WriteProxy writes every released module of the tree at version into
// proxy, in the layout of GOPROXY=file://proxy: $module/@v/list,
// $version.info, $version.mod, $version.zip. A nested module without a
// LICENSE gets the root's, as the go command does.
func (t *Tree) WriteProxy(proxy, version string) error {
	info, err := json.Marshal(struct {
		Version string
		Time    time.Time
	}{version, t.Time})
	if err != nil {
		return err
	}
	for _, m := range Released {
		dir := filepath.Join(t.Dir, filepath.FromSlash(m.Dir))
		if m.Dir != "" {
			if _, err := os.Stat(filepath.Join(dir, "LICENSE")); errors.Is(err, os.ErrNotExist) {
				lic, err := os.ReadFile(filepath.Join(t.Dir, "LICENSE"))
				if err == nil {
					if err := os.WriteFile(filepath.Join(dir, "LICENSE"), lic, 0o644); err != nil {
						return fmt.Errorf("installtest: %w", err)
					}
				}
			}
		}
		mv := module.Version{Path: m.Path, Version: version}
		esc, err := module.EscapePath(m.Path)
		if err != nil {
			return fmt.Errorf("installtest: %w", err)
		}
		vdir := filepath.Join(proxy, filepath.FromSlash(esc), "@v")
		if err := os.MkdirAll(vdir, 0o755); err != nil {
			return fmt.Errorf("installtest: %w", err)
		}
		mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err != nil {
			return fmt.Errorf("installtest: %w", err)
		}
		z, err := os.Create(filepath.Join(vdir, version+".zip"))
		if err != nil {
			return fmt.Errorf("installtest: %w", err)
		}
		if err := zip.CreateFromDir(z, mv, dir); err != nil {
			z.Close()
			return fmt.Errorf("installtest: zip of %s: %w", mv, err)
		}
		if err := z.Close(); err != nil {
			return fmt.Errorf("installtest: %w", err)
		}
		for name, data := range map[string][]byte{
			version + ".mod":  mod,
			version + ".info": info,
			"list":            []byte(version + "\n"),
		} {
			if err := os.WriteFile(filepath.Join(vdir, name), data, 0o644); err != nil {
				return fmt.Errorf("installtest: %w", err)
			}
		}
	}
	return nil
}

// git runs git in dir and returns its standard output.
func git(dir string, args ...string) ([]byte, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("installtest: git %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}
