package main

import (
	"cmp"
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/semver"
)

//go:embed testdata/consumer/main.go
var consumerMain []byte

func main() {
	version := flag.String("version", "v0.1.0", "the version the tags will name")
	rev := flag.String("rev", "HEAD", "the revision the tags will name")
	worktree := flag.Bool("worktree", false, "use the work tree (uncommitted changes included) instead of -rev")
	proxyOnly := flag.String("proxy-only", "", "write the module proxy to this directory and stop")
	keep := flag.Bool("keep", false, "keep the temporary directory (printed) for inspection")
	list := flag.Bool("list", false, "print the released modules' directories in tag order (. for the root) and stop")
	flag.Parse()
	if *list {
		for _, m := range Released {
			fmt.Println(cmp.Or(m.Dir, "."))
		}
		return
	}
	if err := run(*version, *rev, *worktree, *proxyOnly, *keep); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(version, rev string, worktree bool, proxyOnly string, keep bool) error {
	if !semver.IsValid(version) || semver.Canonical(version) != version {
		return fmt.Errorf("installtest: %q is not a canonical semantic version (vMAJOR.MINOR.PATCH)", version)
	}
	top, err := git(".", "rev-parse", "--show-toplevel")
	if err != nil {
		return err
	}
	repo := strings.TrimSpace(string(top))

	tmp, err := os.MkdirTemp("", "mqttauth-installtest-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Println("installtest: keeping", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}

	var tree *Tree
	if worktree {
		fmt.Printf("installtest: the work tree of %s at %s\n", repo, version)
		tree, err = ExportWorktree(repo, filepath.Join(tmp, "tree"))
	} else {
		if out, _ := git(repo, "status", "--porcelain", "--untracked-files=no"); len(out) > 0 {
			fmt.Printf("installtest: note: uncommitted changes are not tested (-worktree tests them)\n")
		}
		fmt.Printf("installtest: %s of %s at %s\n", rev, repo, version)
		tree, err = ExportRev(repo, rev, filepath.Join(tmp, "tree"))
	}
	if err != nil {
		return err
	}
	if err := tree.CheckModules(); err != nil {
		return err
	}
	proxy := proxyOnly
	if proxy == "" {
		proxy = filepath.Join(tmp, "proxy")
	}
	if err := tree.WriteProxy(proxy, version); err != nil {
		return err
	}
	if proxyOnly != "" {
		fmt.Println("installtest: proxy written to", proxyOnly)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	return consume(ctx, tmp, proxy, version)
}

// consume plays a user: a new module in tmp/consumer that gets the
// released modules at version from proxy, builds and runs the consumer
// program, and installs the example broker.
func consume(ctx context.Context, tmp, proxy, version string) error {
	dir := filepath.Join(tmp, "consumer")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	gomod := "module example.com/mqttauth-consumer\n\ngo 1.25.0\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), consumerMain, 0o644); err != nil {
		return err
	}
	env, err := userEnv(tmp, proxy)
	if err != nil {
		return err
	}
	// gocmd runs the go command as the user, printing its output (only
	// on failure when quiet) and how long it took.
	gocmd := func(quiet bool, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir, cmd.Env = dir, env
		start := time.Now()
		out, err := cmd.CombinedOutput()
		fmt.Printf("installtest: $ go %s (%.1f s)\n", strings.Join(args, " "), time.Since(start).Seconds())
		if err != nil || !quiet {
			os.Stdout.Write(out)
		}
		if err != nil {
			return string(out), fmt.Errorf("installtest: go %s: %w", strings.Join(args, " "), err)
		}
		return string(out), nil
	}
	const root = "github.com/mqttauth/mqttauth"
	// One at a time, the adapter first, as a user adds them: each must
	// resolve on its own (a nested module that required a version of the
	// root that does not exist would fail here).
	for _, m := range []string{root + "/adapters/mochi", root + "/metrics/prometheus", root} {
		if _, err := gocmd(false, "get", m+"@"+version); err != nil {
			return err
		}
	}
	if _, err := gocmd(false, "mod", "tidy"); err != nil {
		return err
	}
	out, err := gocmd(true, "list", "-m", "-f", "{{.Path}} {{.Version}} {{if .Replace}}replaced{{end}}", "all")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && strings.HasPrefix(f[0], root) && (f[1] != version || len(f) > 2) {
			return fmt.Errorf("installtest: the consumer has %s, want every module of the project at %s", line, version)
		}
	}
	bin := filepath.Join(tmp, "bin")
	if _, err := gocmd(false, "build", "-o", filepath.Join(bin, "consumer"), "."); err != nil {
		return err
	}
	fmt.Println("installtest: $ consumer")
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "consumer"))
	cmd.Dir = dir
	res, err := cmd.CombinedOutput()
	os.Stdout.Write(res)
	if err != nil {
		return fmt.Errorf("installtest: the consumer program failed: %w", err)
	}
	if !strings.Contains(string(res), "CONNACK 0x00") {
		return errors.New("installtest: the consumer program did not report CONNACK 0x00")
	}
	// A user installs the example broker the way the README says.
	if _, err := gocmd(false, "install", root+"/examples/broker@"+version); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(bin, "broker")); err != nil {
		return fmt.Errorf("installtest: go install left no broker in GOBIN: %w", err)
	}
	fmt.Printf("installtest: ok: %s, adapters/mochi, metrics/prometheus and examples at %s install from a module proxy\n", root, version)
	return nil
}

// userEnv is the environment of a user outside the repository: no
// workspace, a fresh module cache (so no earlier copy of a version is
// reused), the proxy on disk first, then the local module cache and the
// machine's configured proxy for third-party modules, and no checksum
// database lookups for the project's modules, which none knows yet.
// -trimpath keeps the build cache's keys independent of the module
// cache's location, so a second run compiles only what changed.
func userEnv(tmp, proxy string) ([]string, error) {
	goenv := func(name string) (string, error) {
		out, err := exec.Command("go", "env", name).Output()
		if err != nil {
			return "", fmt.Errorf("installtest: go env %s: %w", name, err)
		}
		return strings.TrimSpace(string(out)), nil
	}
	upstream, err := goenv("GOPROXY")
	if err != nil {
		return nil, err
	}
	cache, err := goenv("GOMODCACHE")
	if err != nil {
		return nil, err
	}
	flags, err := goenv("GOFLAGS")
	if err != nil {
		return nil, err
	}
	var keep []string
	for _, f := range strings.Fields(flags) {
		if !strings.HasPrefix(f, "-mod=") && !strings.HasPrefix(f, "-modfile") {
			keep = append(keep, f)
		}
	}
	proxies := []string{"file://" + filepath.ToSlash(proxy)}
	if st, err := os.Stat(filepath.Join(cache, "cache", "download")); err == nil && st.IsDir() {
		proxies = append(proxies, "file://"+filepath.ToSlash(filepath.Join(cache, "cache", "download")))
	}
	if upstream != "" && upstream != "off" {
		proxies = append(proxies, upstream)
	}
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "GOWORK", "GOFLAGS", "GOPROXY", "GONOSUMDB", "GONOSUMCHECK", "GOPRIVATE", "GONOPROXY", "GOMODCACHE", "GOBIN", "PWD":
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"GOWORK=off",
		"GOFLAGS="+strings.Join(append(keep, "-mod=mod", "-modcacherw", "-trimpath"), " "),
		"GOPROXY="+strings.Join(proxies, ","),
		"GONOSUMDB=github.com/mqttauth/mqttauth",
		"GOMODCACHE="+filepath.Join(tmp, "modcache"),
		"GOBIN="+filepath.Join(tmp, "bin"),
	), nil
}
