package promtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mqttauth/mqttauth/auth/authtest"
)

// Binary returns the path of the prometheus program, or skips the test
// naming the Debian package; with CI=true a missing program fails it.
func Binary(tb testing.TB) string {
	tb.Helper()
	p, err := exec.LookPath("prometheus")
	if err != nil {
		msg := "no prometheus on PATH: apt-get install prometheus"
		if os.Getenv("CI") == "true" {
			tb.Fatalf("CI=true and %s", msg)
		}
		tb.Skip(msg)
	}
	return p
}

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Start runs the Prometheus server bin on a free loopback port, scraping
// target (HOST:PORT, path /metrics) every second, until the test ends; it
// returns its base URL once the server is ready.
func Start(tb testing.TB, bin, target string) string {
	tb.Helper()
	dir := tb.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: mqttauth
    scrape_interval: 1s
    scrape_timeout: 900ms
    static_configs:
      - targets: [%q]
`, target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		tb.Fatalf("promtest: %v", err)
	}
	addr := authtest.FreeAddr(tb)
	out := &lockedBuffer{}
	cmd := exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("promtest: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	tb.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if tb.Failed() {
			tb.Logf("prometheus output:\n%s", out.String())
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		select {
		case <-done:
			tb.Fatalf("promtest: prometheus exited:\n%s", out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			tb.Fatalf("promtest: prometheus not ready after 30 s:\n%s", out.String())
		}
	}
}

// Query asks Prometheus at base for the value of an instant vector
// expression that yields at most one sample; -1 when it yields none.
func Query(tb testing.TB, base, expr string) float64 {
	tb.Helper()
	v, err := query(base, expr)
	if err != nil {
		tb.Fatalf("promtest: %s: %v", expr, err)
	}
	return v
}

func query(base, expr string) (float64, error) {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, fmt.Errorf("%w: %s", err, body)
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("status %q: %s", r.Status, body)
	}
	switch len(r.Data.Result) {
	case 0:
		return -1, nil
	case 1:
	default:
		return 0, fmt.Errorf("%d samples, want one: %s", len(r.Data.Result), body)
	}
	s, ok := r.Data.Result[0].Value[1].(string)
	if !ok {
		return 0, fmt.Errorf("not a sample value: %s", body)
	}
	return strconv.ParseFloat(s, 64)
}

// Eventually waits (at most d) until expr's value is want, and fails the
// test with the last value otherwise.
func Eventually(tb testing.TB, base, expr string, want float64, d time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(d)
	var got float64
	for {
		got = Query(tb, base, expr)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("promtest: %s = %v after %v, want %v", expr, got, d, want)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
