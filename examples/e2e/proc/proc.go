// Package proc runs the example programs as real processes for
// end-to-end tests: it builds a main package once per test binary, starts
// programs in their own process group (killed at the test's cleanup),
// starts the example broker with a configuration and waits until it
// listens, and watches their output. It is meant for tests only.
//
//	broker, port := proc.StartBroker(t, t.TempDir(), yamlConfig)
//	client := proc.Start(t, proc.Binary(t, "github.com/mqttauth/mqttauth/examples/satclient"), "-broker", "localhost:"+port)
//	client.WaitFor(t, 10*time.Second, "msg=connected")
//	proc.WaitFor(t, broker.Out, 5*time.Second, "decision=pass")
package proc

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mqttauth/mqttauth/auth/authtest"
)

// Buffer is a process's output, safe for the copier and the test to share.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Count returns how many lines written so far contain all of parts.
func (b *Buffer) Count(parts ...string) int {
	n := 0
	for _, line := range strings.Split(b.String(), "\n") {
		ok := true
		for _, p := range parts {
			if !strings.Contains(line, p) {
				ok = false
				break
			}
		}
		if ok && line != "" {
			n++
		}
	}
	return n
}

var (
	buildMu  sync.Mutex
	buildDir string
	built    = map[string]string{}
)

// Binary builds the main package pkg (an import path of this module, e.g.
// "github.com/mqttauth/mqttauth/examples/broker") once per test binary and
// returns the executable's path. Cleanup removes the build directory.
func Binary(tb testing.TB, pkg string) string {
	tb.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[pkg]; ok {
		return p
	}
	if buildDir == "" {
		d, err := os.MkdirTemp("", "mqttauth-e2e-bin-")
		if err != nil {
			tb.Fatalf("proc: %v", err)
		}
		buildDir = d
	}
	out := filepath.Join(buildDir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("proc: go build %s: %v\n%s", pkg, err, b)
	}
	built[pkg] = out
	return out
}

// Cleanup removes the binaries Binary built; call it from TestMain.
func Cleanup() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
		buildDir = ""
		built = map[string]string{}
	}
}

// RequireTool returns the path of an external program, or skips the test
// with a message naming the Debian package; with CI=true it fails instead.
func RequireTool(tb testing.TB, name, debPackage string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		msg := fmt.Sprintf("no %s on PATH: apt-get install %s", name, debPackage)
		if os.Getenv("CI") == "true" {
			tb.Fatalf("CI=true and %s", msg)
		}
		tb.Skip(msg)
	}
	return p
}

// Process is a started program.
type Process struct {
	// Out is its stdout and stderr.
	Out  *Buffer
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start runs a program in its own process group; the test's cleanup kills
// it (SIGTERM, then SIGKILL after 5 s) and waits for it.
func Start(tb testing.TB, path string, args ...string) *Process {
	tb.Helper()
	p := &Process{Out: &Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.Out, p.Out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("proc: starting %s: %v", path, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(func() {
		p.Stop()
		if tb.Failed() {
			tb.Logf("proc: output of %s %s:\n%s", filepath.Base(path), strings.Join(args, " "), tail(p.Out.String(), 8<<10))
		}
	})
	return p
}

// tail returns the last n bytes of s, from a line start where possible.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return "[...]\n" + s
}

// Signal sends sig to the process group.
func (p *Process) Signal(sig syscall.Signal) { _ = syscall.Kill(-p.cmd.Process.Pid, sig) }

// Stop ends the process (SIGTERM, SIGKILL after 5 s) and returns its exit
// error.
func (p *Process) Stop() error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.Signal(syscall.SIGKILL)
		<-p.done
	}
	return p.err
}

// Wait waits up to d for the process to exit and reports whether it did,
// with its exit error.
func (p *Process) Wait(d time.Duration) (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	case <-time.After(d):
		return false, nil
	}
}

// WaitFor waits up to d for a line containing all of parts in the output.
func (p *Process) WaitFor(tb testing.TB, d time.Duration, parts ...string) {
	tb.Helper()
	WaitFor(tb, p.Out, d, parts...)
}

// WaitFor waits up to d for a line of b containing all of parts.
func WaitFor(tb testing.TB, b *Buffer, d time.Duration, parts ...string) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for b.Count(parts...) == 0 {
		if time.Now().After(deadline) {
			tb.Fatalf("proc: no line with %q after %v in:\n%s", parts, d, b.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// FreeAddr returns a free loopback address, 127.0.0.1:PORT, for a
// program started with it ([authtest.FreeAddr]: a port below the ephemeral
// range, so that no outgoing connection takes it before the program binds
// it).
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	return authtest.FreeAddr(tb)
}

// StartBroker writes cfg (YAML) to dir/broker.yaml, starts the example
// broker binary with it on a free loopback port and waits until it
// listens. It returns the process and the port.
func StartBroker(tb testing.TB, dir, cfg string) (*Process, string) {
	tb.Helper()
	bin := Binary(tb, "github.com/mqttauth/mqttauth/examples/broker")
	path := filepath.Join(dir, "broker.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		tb.Fatalf("proc: %v", err)
	}
	addr := FreeAddr(tb)
	p := Start(tb, bin, "-config", path, "-addr", addr)
	deadline := time.Now().Add(20 * time.Second)
	for p.Out.Count(`msg="broker listening"`) == 0 {
		if exited, err := p.Wait(100 * time.Millisecond); exited {
			tb.Fatalf("proc: the broker exited (%v):\n%s", err, p.Out.String())
		}
		if time.Now().After(deadline) {
			tb.Fatalf("proc: the broker is not listening after 20 s:\n%s", p.Out.String())
		}
	}
	_, port, _ := net.SplitHostPort(addr)
	return p, port
}

// Run runs a program to its end (at most d) and returns its combined
// output and exit error.
func Run(tb testing.TB, d time.Duration, path string, args ...string) (string, error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	return string(out), err
}

// satConfig is a broker configuration with the ServiceAccountToken method
// and ABAC rules on the annotations group and building.
const satConfig = `apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerListener
metadata: {name: sat}
spec:
  ports:
    - port: 8883
      address: 127.0.0.1
      authenticationRef: sat
      authorizationRef: sensors
      tls: {mode: Manual, manual: {certFile: %[1]s/mqtts-endpoint.crt, keyFile: %[1]s/mqtts-endpoint.key}}
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthentication
metadata: {name: sat}
spec:
  authenticationMethods:
    - method: ServiceAccountToken
      serviceAccountTokenSettings:
        audiences: [aio-mq]
        apiServer: %[2]s
        caFile: %[3]s
        tokenFile: %[4]s
        mode: %[5]s
        issuer: %[6]s
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthorization
metadata: {name: sensors}
spec:
  authorizationPolicies:
    rules:
      - principals:
          attributes:
            - group: sensors
        brokerResources:
          - method: Connect
          - method: Publish
            topics: ["buildings/{principal.attributes.building}/#"]
`

// SATConfig returns a broker configuration (YAML) for K8S-SAT clients:
// the development PKI in pkiDir (devpki) for the listener; the API server
// at apiServer, trusted through caFile, with the broker's token in
// tokenFile; mode "tokenReview" or "local" (with issuer); audience aio-mq.
// Clients whose service account is annotated aio-broker-auth/group:
// sensors may connect and publish under buildings/{their
// aio-broker-auth/building}/#.
func SATConfig(pkiDir, apiServer, caFile, tokenFile, mode, issuer string) string {
	return fmt.Sprintf(satConfig, pkiDir, apiServer, caFile, tokenFile, mode, issuer)
}

// Main is a TestMain for packages whose tests start shared programs: it
// runs the tests, calls stop (each in order: the shared kube-apiserver,
// say), removes the programs Binary built and, when the tests passed,
// fails the run if a goroutine is left behind. It does not return.
//
//	func TestMain(m *testing.M) { proc.Main(m, kubetest.StopShared) }
func Main(m *testing.M, stop ...func()) {
	code := m.Run()
	for _, f := range stop {
		f()
	}
	Cleanup()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
