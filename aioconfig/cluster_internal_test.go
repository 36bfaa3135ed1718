package aioconfig

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/internal/kubeapi"
)

// Every field that names a ConfigMap or a Secret is followed by name; a
// value that is a path is a file, not a reference.
func TestClusterReferences(t *testing.T) {
	c, err := Parse([]byte(`
kind: BrokerListener
metadata: {name: l}
spec:
  ports:
    - {port: 8883, authenticationRef: a, tls: {mode: Manual, manual: {secretRef: server-cert}}}
---
kind: BrokerAuthentication
metadata: {name: a}
spec:
  authenticationMethods:
    - method: X509
      x509Settings: {trustedClientCaCert: client-ca, crls: [crl-cm, ./crls/file.pem], attributes: {secretName: attrs}}
    - method: Custom
      customSettings: {endpoint: "https://auth.example/", caCertConfigMap: auth-ca, auth: {x509: {secretRef: client-cert}}}
    - method: SCRAM
      scramSettings: {usersFile: scram-users}
    - method: JWT
      jwtSettings: {issuer: "https://issuer.example/", audiences: [a], caCert: /etc/issuer-ca.pem}
`), "test", "")
	require.NoError(t, err)
	var got []string
	for _, r := range references(c) {
		got = append(got, r.resource+"/"+r.name+" "+r.kind+"/"+r.owner+" "+r.field)
	}
	slices.Sort(got)
	require.Equal(t, []string{
		"configmaps/auth-ca BrokerAuthentication/a spec.authenticationMethods[1].customSettings.caCert",
		"configmaps/client-ca BrokerAuthentication/a spec.authenticationMethods[0].x509Settings.trustedClientCaCert",
		"configmaps/crl-cm BrokerAuthentication/a spec.authenticationMethods[0].x509Settings.crls[0]",
		"secrets/attrs BrokerAuthentication/a spec.authenticationMethods[0].x509Settings.attributes.secretName",
		"secrets/client-cert BrokerAuthentication/a spec.authenticationMethods[1].customSettings.auth.x509",
		"secrets/scram-users BrokerAuthentication/a spec.authenticationMethods[2].scramSettings.usersFile",
		"secrets/server-cert BrokerListener/l spec.ports[0].tls.manual.secretRef",
	}, got)
}

// The loader reads an API object as kind, name and spec: the server's
// metadata and the apiVersion are left out.
func TestClusterResourceDoc(t *testing.T) {
	doc, err := resourceDoc([]byte(`{"apiVersion":"mqttbroker.iotoperations.azure.com/v1","kind":"BrokerAuthorization",
		"metadata":{"name":"p","namespace":"ns","uid":"u","resourceVersion":"7","managedFields":[{"manager":"kubectl"}]},
		"spec":{"authorizationPolicies":{"rules":[]}},"status":{"x":1}}`), KindAuthorization)
	require.NoError(t, err)
	require.JSONEq(t, `{"kind":"BrokerAuthorization","metadata":{"name":"p"},"spec":{"authorizationPolicies":{"rules":[]}}}`, string(doc))
}

func TestClusterDecodeData(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString
	raw, _ := json.Marshal(map[string]any{"data": map[string]string{"tls.crt": b64([]byte("CERT"))}})
	got, err := decodeData("secrets", raw)
	require.NoError(t, err)
	require.Equal(t, map[string][]byte{"tls.crt": []byte("CERT")}, got)
	raw, _ = json.Marshal(map[string]any{"data": map[string]string{"ca.pem": "PEM"}, "binaryData": map[string]string{"ca.der": b64([]byte{1, 2})}})
	got, err = decodeData("configmaps", raw)
	require.NoError(t, err)
	require.Equal(t, map[string][]byte{"ca.pem": []byte("PEM"), "ca.der": {1, 2}}, got)
	_, err = decodeData("secrets", []byte(`{"data":{"k":"not base64!"}}`))
	require.Error(t, err)
}

// A ConfigMap or Secret is kept in memory only: each version is a new
// map (the snapshots of assembled Configs never change), and a deleted
// object leaves the snapshots, so that parse reports the reference while
// the running sources keep their last good content.
func TestClusterKeyedInMemory(t *testing.T) {
	k := &Cluster{maps: map[string]*keyed{}, resources: map[string]map[string]kubeapi.Object{}, kick: make(chan struct{}, 1), ctx: context.Background(), log: slog.New(slog.DiscardHandler)}
	obj := func(pem string) kubeapi.Object {
		raw, _ := json.Marshal(map[string]any{"metadata": map[string]any{"name": "ca"}, "data": map[string]string{"ca.pem": pem}})
		return kubeapi.Object{Meta: kubeapi.ObjectMeta{Name: "ca"}, Raw: raw}
	}
	k.keyedEvent("configmaps", "ca", "ADDED", obj("ONE"))
	c1, err := k.assemble()
	require.NoError(t, err)
	require.Equal(t, map[string][]byte{"ca.pem": []byte("ONE")}, c1.objects["configmaps/ca"])
	k.keyedEvent("configmaps", "ca", "MODIFIED", obj("TWO"))
	c2, err := k.assemble()
	require.NoError(t, err)
	require.Equal(t, "TWO", string(c2.objects["configmaps/ca"]["ca.pem"]))
	require.Equal(t, "ONE", string(c1.objects["configmaps/ca"]["ca.pem"]), "an earlier snapshot is unchanged")
	k.keyedEvent("configmaps", "ca", "DELETED", obj("TWO"))
	require.False(t, k.maps["configmaps/ca"].exists, "known as deleted: parse reports the reference")
	c3, err := k.assemble()
	require.NoError(t, err)
	require.NotContains(t, c3.objects, "configmaps/ca")
}
