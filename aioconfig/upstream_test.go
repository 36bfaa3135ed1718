package aioconfig_test

import (
	"testing"
	"time"

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

// MqttAuthSettings upstream.coordination turns the gateways' takeover
// coordination on (its presence), with upstream.protocol "3.1.1" only.
func TestUpstreamCoordination(t *testing.T) {
	doc := func(up string) []byte {
		return []byte(limitsListener + "---\napiVersion: mqttauth.dev/v1alpha1\nkind: MqttAuthSettings\nspec:\n  upstream: " + up + "\n")
	}
	c, err := aioconfig.Parse(doc(`{protocol: "3.1.1", coordination: {}}`), "up.yaml", t.TempDir())
	require.NoError(t, err)
	require.NotNil(t, c.Settings.Upstream.Coordination)
	n, g, w := c.Settings.Upstream.Coordination.Durations()
	require.Zero(t, n+g+w, "empty: the gateway's defaults")

	c, err = aioconfig.Parse(doc(`{protocol: "3.1.1", coordination: {topic: "$ops/takeover", clientIdPrefix: "gw-", username: "gw", noticeTimeout: 2s, grace: 500ms, window: 30s}}`), "up.yaml", t.TempDir())
	require.NoError(t, err)
	co := c.Settings.Upstream.Coordination
	require.Equal(t, "$ops/takeover", co.Topic)
	require.Equal(t, "gw-", co.ClientIDPrefix)
	require.Equal(t, "gw", co.Username)
	n, g, w = co.Durations()
	require.Equal(t, []time.Duration{2 * time.Second, 500 * time.Millisecond, 30 * time.Second}, []time.Duration{n, g, w})

	c, err = aioconfig.Parse(doc(`{protocol: "3.1.1"}`), "up.yaml", t.TempDir())
	require.NoError(t, err)
	require.Nil(t, c.Settings.Upstream.Coordination, "off without the section")

	for up, field := range map[string]string{
		`{protocol: "5", coordination: {}}`:                       "upstream.protocol",
		`{coordination: {}}`:                                      "upstream.protocol",
		`{protocol: "3.1.1", coordination: {topic: "a/#"}}`:       "upstream.coordination.topic",
		`{protocol: "3.1.1", coordination: {grace: "-1s"}}`:       "upstream.coordination.grace",
		`{protocol: "3.1.1", coordination: {window: "0s"}}`:       "upstream.coordination.window",
		`{protocol: "3.1.1", coordination: {noticeTimeout: "x"}}`: "upstream.coordination.noticeTimeout",
		`{protocol: "3.1.1", coordination: {pasword: "x"}}`:       "upstream.coordination.pasword",
	} {
		_, err := aioconfig.Parse(doc(up), "bad.yaml", t.TempDir())
		require.Error(t, err, up)
		require.ErrorContains(t, err, field, up)
	}
}
