package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// bin holds the binaries built once by TestMain: bin["broker"], ...
var bin = map[string]string{}

// programs are the example commands TestMain builds.
var programs = []string{"broker", "authserver"}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mqttauth-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, p := range programs {
		out := filepath.Join(dir, p)
		cmd := exec.Command("go", "build", "-race", "-o", out, "../"+p)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: building %s: %v\n", p, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
		bin[p] = out
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireTool returns the path of a command the test needs. By hand it
// skips when the tool is missing; in CI (CI=true) that is a failure.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed; .ci/run must install %s", name, pkg)
	}
	t.Skipf("%s is not installed (apt-get install %s); skipping", name, pkg)
	return ""
}

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// process is a started program whose output is collected.
type process struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  strings.Builder
	seen chan struct{} // closed when the wanted line was seen
	done chan struct{}
}

// start runs a program and waits until a line of its output contains
// ready (not at all when ready is empty). The process is killed when the
// test ends.
func start(t *testing.T, ready string, name string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(name, args...), seen: make(chan struct{}), done: make(chan struct{})}
	p.cmd.Dir = t.TempDir()
	r, w := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	if ready == "" {
		once.Do(func() { close(p.seen) })
	}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if strings.Contains(sc.Text(), ready) {
				once.Do(func() { close(p.seen) })
			}
		}
	}()
	go func() {
		_ = p.cmd.Wait()
		w.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(name), p.output())
		}
	})
	select {
	case <-p.seen:
	case <-p.done:
		t.Fatalf("%s exited before it was ready:\n%s", name, p.output())
	case <-time.After(60 * time.Second):
		t.Fatalf("%s not ready after 60 s:\n%s", name, p.output())
	}
	return p
}

func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// waitOutput waits until the process's output contains s.
func (p *process) waitOutput(t *testing.T, s string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if strings.Contains(p.output(), s) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %q in the output within %v:\n%s", s, within, p.output())
}

// runCmd runs a command to its end (bounded by timeout) and returns its
// combined output and exit error.
func runCmd(t *testing.T, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}
