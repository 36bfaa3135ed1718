package authtest_test

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth/authtest"
)

func TestFreeAddrCanBeBound(t *testing.T) {
	seen := map[string]bool{}
	for range 5 {
		addr := authtest.FreeAddr(t)
		host, _, err := net.SplitHostPort(addr)
		require.NoError(t, err)
		require.Equal(t, "127.0.0.1", host)
		l, err := net.Listen("tcp", addr)
		require.NoError(t, err, "the address FreeAddr returned is taken")
		require.NoError(t, l.Close())
		seen[addr] = true
	}
	require.Greater(t, len(seen), 1, "five calls returned one address")
}
