package certid_test

import (
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/internal/certid"
)

func TestSerial(t *testing.T) {
	for _, tc := range []struct {
		serial *big.Int
		want   string
	}{
		{big.NewInt(0), "00"},
		{big.NewInt(10), "0A"},
		{big.NewInt(0x1234), "1234"},
		{big.NewInt(0x80), "80"},
		{big.NewInt(-5), "-05"},
		{new(big.Int).SetBytes([]byte{0x01, 0xab, 0xcd, 0xef, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}),
			"01ABCDEF00112233445566778899AABBCCDDEEFF"},
	} {
		require.Equal(t, tc.want, certid.Serial(&x509.Certificate{SerialNumber: tc.serial}), "serial %v", tc.serial)
	}
	require.Empty(t, certid.Serial(nil))
}

// TestMatchesOpenSSL compares both forms with what the openssl command
// prints for the same certificate, when openssl is installed.
func TestMatchesOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed: comparing with its output needs it")
	}
	leaf := authtest.NewRootCA(t, "root").Leaf(t, "device-1", authtest.WithSerial(0x7f12ab))
	c := leaf.Cert
	path := filepath.Join(t.TempDir(), "leaf.pem")
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o600))

	out, err := exec.Command(openssl, "x509", "-in", path, "-noout", "-serial", "-fingerprint", "-sha256").CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "serial="+certid.Serial(c)+"\n")
	require.Contains(t, strings.ToLower(string(out)), strings.ToLower("Fingerprint="+certid.Fingerprint(c)))
}
