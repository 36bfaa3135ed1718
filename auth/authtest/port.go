package authtest

import (
	"net"
	"strconv"
	"testing"

	"github.com/mqttauth/mqttauth/internal/freeport"
)

// FreeAddr returns a loopback address, 127.0.0.1:PORT, that nothing
// listened on when it checked, for a server that runs in another process
// (mosquitto, prometheus, an example program) and must be told its port
// before it binds it. The port is below the kernel's ephemeral range,
// where outgoing connections and "127.0.0.1:0" listeners do not land, so
// nothing else on a busy machine takes it first; a caller should still
// treat "address already in use" as a reason to try again. An in-process
// server should listen on "127.0.0.1:0" instead. It fails tb when no port
// can be found.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	port, err := freeport.Loopback()
	if err != nil {
		tb.Fatalf("authtest: free port: %v", err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}
