package aioconfig_test

// The Kubernetes source against a REAL kube-apiserver: resources written
// in the v1beta1 shape through the v1beta1 endpoint load when read in v1
// (and in v1beta1), the referenced ConfigMap and Secret are fetched by
// name, and an invalid configuration at start-up fails with the resource,
// field and value, and is recorded as an Event on the resource.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/mqttauth/mqttauth/aioconfig"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/satauth/kubetest"
)

// installCRDs creates the CRDs of deploy/kubernetes/crds.yaml and waits
// until both versions are served in ns.
func installCRDs(t *testing.T, env *kubetest.Env, ns string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "deploy", "kubernetes", "crds.yaml"))
	require.NoError(t, err)
	for _, doc := range bytes.Split(data, []byte("\n---")) {
		j, err := yaml.YAMLToJSON(doc)
		require.NoError(t, err)
		var crd map[string]any
		require.NoError(t, json.Unmarshal(j, &crd))
		if crd == nil {
			continue
		}
		require.NoError(t, env.Admin(http.MethodPost, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd))
	}
	for _, r := range []string{aioconfig.ResourceListeners, aioconfig.ResourceAuthentications, aioconfig.ResourceAuthorizations} {
		for _, v := range []string{"v1", "v1beta1"} {
			require.Eventually(t, func() bool {
				_, err := env.Call(http.MethodGet, "/apis/"+aioconfig.Group+"/"+v+"/namespaces/"+ns+"/"+r, env.AdminToken, nil)
				return err == nil
			}, 30*time.Second, 100*time.Millisecond)
		}
	}
}

func adminTokenFile(t *testing.T, env *kubetest.Env) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(p, []byte(env.AdminToken), 0o600))
	return p
}

func createIn(t *testing.T, env *kubetest.Env, ns, version, resource string, obj map[string]any) {
	t.Helper()
	path := "/apis/" + aioconfig.Group + "/" + version + "/namespaces/" + ns + "/" + resource
	if version == "" {
		path = "/api/v1/namespaces/" + ns + "/" + resource
	}
	require.NoError(t, env.Admin(http.MethodPost, path, obj))
}

func TestClusterKube(t *testing.T) {
	env := kubetest.Require(t)
	installCRDs(t, env, kubetest.Namespace)
	token := adminTokenFile(t, env)

	t.Run("v1beta1_shape_read_in_either_version", func(t *testing.T) {
		ns := kubetest.Namespace
		root := authtest.NewRootCA(t, "Beta Root CA")
		srvCA := authtest.NewRootCA(t, "Beta Server CA")
		srv := srvCA.Leaf(t, "localhost", authtest.WithDNSNames("localhost"))
		createIn(t, env, ns, "", "configmaps", map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": "beta-ca"}, "data": map[string]any{"ca.pem": string(authtest.CertsPEM(root.Cert))}})
		createIn(t, env, ns, "", "secrets", map[string]any{"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
			"metadata": map[string]any{"name": "beta-server"}, "data": map[string]any{
				"tls.crt": base64.StdEncoding.EncodeToString(srv.ChainPEM()), "tls.key": base64.StdEncoding.EncodeToString(srv.KeyPEM(t))}})
		meta := func(name string) map[string]any { return map[string]any{"name": name} }
		createIn(t, env, ns, "v1beta1", aioconfig.ResourceAuthentications, map[string]any{
			"apiVersion": aioconfig.APIv1beta1, "kind": "BrokerAuthentication", "metadata": meta("beta-authn"),
			"spec": map[string]any{"authenticationMethods": []any{map[string]any{
				"method": "x509Credentials", "x509Credentials": map[string]any{"trustedClientCaCert": "beta-ca",
					"authorizationAttributes": map[string]any{"fan": map[string]any{"subject": "CN = fan", "attributes": map[string]any{"building": "17"}}}}}}}})
		createIn(t, env, ns, "v1beta1", aioconfig.ResourceAuthorizations, map[string]any{
			"apiVersion": aioconfig.APIv1beta1, "kind": "BrokerAuthorization", "metadata": meta("beta-authz"),
			"spec": map[string]any{"authorizationPolicies": map[string]any{"rules": []any{map[string]any{
				"principals":      map[string]any{"attributes": []any{map[string]any{"building": "17"}}},
				"brokerResources": []any{map[string]any{"method": "Connect"}}}}}}})
		createIn(t, env, ns, "v1beta1", aioconfig.ResourceListeners, map[string]any{
			"apiVersion": aioconfig.APIv1beta1, "kind": "BrokerListener", "metadata": meta("beta-listener"),
			"spec": map[string]any{"ports": []any{map[string]any{"port": 18883, "authenticationRef": "beta-authn", "authorizationRef": "beta-authz",
				"tls": map[string]any{"mode": "Manual", "manual": map[string]any{"secretRef": "beta-server"}}}}}})

		// No Secret or ConfigMap byte is written to disk: a temporary
		// directory that may not be written to stays empty.
		ro := t.TempDir()
		require.NoError(t, os.Chmod(ro, 0o500))
		t.Cleanup(func() { _ = os.Chmod(ro, 0o700) })
		t.Setenv("TMPDIR", ro)
		for _, version := range []string{"v1", "v1beta1"} {
			t.Run(version, func(t *testing.T) {
				k, err := aioconfig.NewCluster(context.Background(), aioconfig.ClusterConfig{
					Namespace: ns, Version: version, APIServer: env.URL, CAFile: env.CAFile, TokenFile: token,
					Logger: quiet,
				})
				require.NoError(t, err)
				defer k.Close()
				c := k.Config()
				require.Len(t, c.Authentications, 1)
				require.Equal(t, aioconfig.MethodX509, c.Authentications[0].Methods[0].Method)
				require.Equal(t, "beta-ca", c.Authentications[0].Methods[0].X509.TrustedClientCaCert)
				b, err := k.Build(context.Background(), aioconfig.Options{Logger: quiet})
				require.NoError(t, err)
				require.Len(t, b.Ports, 1)
				require.NotNil(t, b.Ports[0].TLS, "the Secret's certificate, fetched by name")
				require.NoError(t, b.CheckReady(context.Background()), "an administrator has every permission")
				m, err := auth.NewManager(b.AuthConfig())
				require.NoError(t, err)
				require.NoError(t, m.Close())
				b.Close()
				entries, err := os.ReadDir(ro)
				require.NoError(t, err)
				require.Empty(t, entries, "the ConfigMap and the Secret are held in memory")
			})
		}
	})

	t.Run("invalid_at_start_names_the_field_and_records_an_event", func(t *testing.T) {
		ns := "aioconfig-invalid"
		require.NoError(t, env.Admin(http.MethodPost, "/api/v1/namespaces", map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}}))
		createIn(t, env, ns, "v1", aioconfig.ResourceListeners, map[string]any{
			"apiVersion": aioconfig.APIv1, "kind": "BrokerListener", "metadata": map[string]any{"name": "lonely"},
			"spec": map[string]any{"ports": []any{map[string]any{"port": 1883, "authenticationRef": "nobody"}}}})
		_, err := aioconfig.NewCluster(context.Background(), aioconfig.ClusterConfig{
			Namespace: ns, APIServer: env.URL, CAFile: env.CAFile, TokenFile: token, Logger: quiet})
		var ae *aioconfig.Error
		require.True(t, errors.As(err, &ae), "%v", err)
		require.ErrorIs(t, err, aioconfig.ErrNotFound)
		require.Equal(t, aioconfig.KindListener, ae.Kind)
		require.Equal(t, "lonely", ae.Name)
		require.Equal(t, "spec.ports[0].authenticationRef", ae.Field)
		require.Equal(t, "nobody", ae.Value)
		body, err := env.Call(http.MethodGet, "/api/v1/namespaces/"+ns+"/events?fieldSelector=involvedObject.name%3Dlonely", env.AdminToken, nil)
		require.NoError(t, err)
		require.Contains(t, body, `"reason":"InvalidConfiguration"`)
		require.True(t, strings.Contains(body, `"kind":"BrokerListener"`), body)
	})

	t.Run("missing_crds_or_rbac_is_an_error", func(t *testing.T) {
		_, err := aioconfig.NewCluster(context.Background(), aioconfig.ClusterConfig{
			Namespace: "default", APIServer: env.URL, CAFile: env.CAFile, TokenFile: filepath.Join(t.TempDir(), "none"), Logger: quiet})
		require.Error(t, err, "no token file")
		anon := filepath.Join(t.TempDir(), "token")
		require.NoError(t, os.WriteFile(anon, []byte("not-a-token"), 0o600))
		_, err = aioconfig.NewCluster(context.Background(), aioconfig.ClusterConfig{
			Namespace: "default", APIServer: env.URL, CAFile: env.CAFile, TokenFile: anon, Logger: quiet})
		require.ErrorIs(t, err, aioconfig.ErrForbidden)
	})
}
