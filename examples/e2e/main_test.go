package e2e

import (
	"os"
	"testing"
	"time"

	"github.com/mqttauth/mqttauth/examples/e2e/proc"
)

func TestMain(m *testing.M) {
	code := m.Run()
	proc.Cleanup()
	os.Exit(code)
}

// binary builds one of the example programs (once per test binary).
func binary(t *testing.T, name string) string {
	t.Helper()
	return proc.Binary(t, "github.com/mqttauth/mqttauth/examples/"+name)
}

// startReady starts a program and, unless ready is empty, waits for a line
// of its output that contains ready.
func startReady(t *testing.T, ready, path string, args ...string) *proc.Process {
	t.Helper()
	p := proc.Start(t, path, args...)
	if ready != "" {
		p.WaitFor(t, 60*time.Second, ready)
	}
	return p
}
