package proc

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// MosquittoPath is where Debian's mosquitto package installs the broker.
const MosquittoPath = "/usr/sbin/mosquitto"

// StartMosquitto runs the mosquitto broker (Debian's 2.0.11 in CI) with a
// generated configuration: a listener on a free loopback port,
// allow_anonymous true, persistence false, logging of everything to
// stderr, then the lines of extra. It waits until the broker accepts
// connections and returns the process and its address. Without mosquitto
// the test is skipped, or fails when CI=true.
func StartMosquitto(tb testing.TB, extra string) (*Process, string) {
	tb.Helper()
	bin := MosquittoPath
	if _, err := os.Stat(bin); err != nil {
		bin = RequireTool(tb, "mosquitto", "mosquitto")
	}
	// mosquitto started as root drops to its own user: its files must be
	// readable by others.
	dir := tb.TempDir()
	_ = os.Chmod(filepath.Dir(dir), 0o755)
	_ = os.Chmod(dir, 0o755)
	for attempt := 0; ; attempt++ {
		addr := FreeAddr(tb)
		_, port, _ := net.SplitHostPort(addr)
		conf := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type all\n%s", port, extra)
		path := filepath.Join(dir, "mosquitto.conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			tb.Fatalf("proc: %v", err)
		}
		p := Start(tb, bin, "-c", path)
		deadline := time.Now().Add(10 * time.Second)
		for {
			if exited, _ := p.Wait(0); exited {
				if attempt < 3 { // most likely the port was taken meanwhile
					break
				}
				tb.Fatalf("proc: mosquitto exited:\n%s", p.Out.String())
			}
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				_ = c.Close()
				return p, addr
			}
			if time.Now().After(deadline) {
				tb.Fatalf("proc: mosquitto is not listening on %s after 10 s:\n%s", addr, p.Out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
