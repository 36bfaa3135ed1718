package aioconfig_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/aioconfig"
)

const limitsListener = `apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerListener
metadata: {name: dev}
spec:
  ports:
  - port: 1883
    authenticationRef: scram
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthentication
metadata: {name: scram}
spec:
  authenticationMethods:
  - method: SCRAM
    scramSettings: {usersFile: users.json}
`

// MqttAuthSettings limits reach the Broker as written, and -check-config
// prints them; without them the Broker has none (the adapter's defaults).
func TestLimits(t *testing.T) {
	c, err := aioconfig.Parse([]byte(limitsListener+`---
apiVersion: mqttauth.dev/v1alpha1
kind: MqttAuthSettings
spec:
  limits: {maxPacketSize: 4096, connectTimeout: 3s, maxUnauthenticatedConnections: 50}
`), "limits.yaml", t.TempDir())
	require.NoError(t, err)
	l := c.Settings.Limits
	require.NotNil(t, l)
	require.Equal(t, 4096, l.MaxPacketSize)
	require.Equal(t, 3*time.Second, l.ConnectTimeoutDuration())
	require.Equal(t, 50, l.MaxUnauthenticatedConnections)

	none, err := aioconfig.Parse([]byte(limitsListener), "none.yaml", t.TempDir())
	require.NoError(t, err)
	require.Nil(t, none.Settings.Limits)
	require.Zero(t, none.Settings.Limits.ConnectTimeoutDuration())

	for _, tc := range []struct{ doc, field string }{
		{"{connectTimeout: soon}", "limits.connectTimeout"},
		{"{connectTimeout: 0s}", "limits.connectTimeout"},
		{"{connectTimeout: -1s}", "limits.connectTimeout"},
		{"{maxPacketSize: 10}", "limits.maxPacketSize"},
		{"{maxPacketSize: 268435456}", "limits.maxPacketSize"},
		{"{maxUnauthenticatedConnections: -1}", "limits.maxUnauthenticatedConnections"},
		{"{maxPacketsize: 4096}", "limits.maxPacketsize"},
	} {
		_, err := aioconfig.Parse([]byte("apiVersion: mqttauth.dev/v1alpha1\nkind: MqttAuthSettings\nspec:\n  limits: "+tc.doc+"\n"), "bad.yaml", "")
		require.Error(t, err, tc.doc)
		require.ErrorContains(t, err, tc.field, tc.doc)
	}
}
