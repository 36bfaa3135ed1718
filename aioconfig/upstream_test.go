package aioconfig_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/aioconfig"
)

// MqttAuthSettings upstream.protocol (the example gateway's broker leg)
// takes 5, 3.1.1 or auto and nothing else.
func TestUpstreamProtocol(t *testing.T) {
	for _, p := range []string{"5", "3.1.1", "auto"} {
		c, err := aioconfig.Parse([]byte(limitsListener+`---
apiVersion: mqttauth.dev/v1alpha1
kind: MqttAuthSettings
spec:
  upstream: {protocol: "`+p+`"}
`), "up.yaml", t.TempDir())
		require.NoError(t, err, p)
		require.Equal(t, p, c.Settings.Upstream.Protocol)
	}
	for _, doc := range []string{`{protocol: "3.1"}`, `{protocol: v5}`, `{protocl: "5"}`} {
		_, err := aioconfig.Parse([]byte("apiVersion: mqttauth.dev/v1alpha1\nkind: MqttAuthSettings\nspec:\n  upstream: "+doc+"\n"), "bad.yaml", "")
		require.Error(t, err, doc)
		require.ErrorContains(t, err, "upstream.proto", doc)
	}
}
