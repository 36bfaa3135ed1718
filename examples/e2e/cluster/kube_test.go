package cluster_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/mqttauth/mqttauth/satauth/kubetest"
)

// deployDir is deploy/kubernetes of the repository.
var deployDir = filepath.Join("..", "..", "..", "deploy", "kubernetes")

// object is one document of a manifest, decoded enough to address it.
type object struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	raw map[string]any
}

// readManifest returns the documents of a YAML file of deployDir.
func readManifest(t *testing.T, name string) []object {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(deployDir, name))
	require.NoError(t, err)
	return parseManifest(t, data)
}

func parseManifest(t *testing.T, data []byte) []object {
	t.Helper()
	var out []object
	for _, doc := range bytes.Split(data, []byte("\n---")) {
		j, err := yaml.YAMLToJSON(doc)
		require.NoError(t, err)
		if s := strings.TrimSpace(string(j)); s == "null" || s == "" {
			continue
		}
		var o object
		require.NoError(t, json.Unmarshal(j, &o))
		require.NoError(t, json.Unmarshal(j, &o.raw))
		require.NotEmpty(t, o.Kind, "a document without kind: %s", doc)
		out = append(out, o)
	}
	return out
}

// collection is the API path that objects of o's kind are created at.
func (o object) collection() string {
	plural := strings.ToLower(o.Kind) + "s"
	base := "/apis/" + o.APIVersion
	if o.APIVersion == "v1" {
		base = "/api/v1"
	}
	if o.Metadata.Namespace == "" {
		return base + "/" + plural
	}
	return base + "/namespaces/" + url.PathEscape(o.Metadata.Namespace) + "/" + plural
}

// create POSTs o (a server-side dry run with dryRun); 409 (it exists) is
// an error unless existsOK.
func create(t *testing.T, env *kubetest.Env, o object, dryRun, existsOK bool) {
	t.Helper()
	path := o.collection()
	if dryRun {
		path += "?dryRun=All&fieldValidation=Strict"
	}
	_, err := env.Call(http.MethodPost, path, env.AdminToken, o.raw)
	var se *kubetest.StatusError
	if existsOK && errors.As(err, &se) && se.Code == http.StatusConflict {
		return
	}
	require.NoError(t, err, "POST %s %s %s", path, o.Kind, o.Metadata.Name)
}

// apply creates o, or replaces it when it exists (its resourceVersion
// read first), as kubectl apply would.
func apply(t *testing.T, env *kubetest.Env, o object) {
	t.Helper()
	_, err := env.Call(http.MethodPost, o.collection(), env.AdminToken, o.raw)
	var se *kubetest.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusConflict {
		require.NoError(t, err, "POST %s %s", o.Kind, o.Metadata.Name)
		return
	}
	item := o.collection() + "/" + url.PathEscape(o.Metadata.Name)
	cur, err := env.Call(http.MethodGet, item, env.AdminToken, nil)
	require.NoError(t, err)
	var m struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	require.NoError(t, json.Unmarshal([]byte(cur), &m))
	raw := map[string]any{}
	for k, v := range o.raw {
		raw[k] = v
	}
	meta := map[string]any{}
	for k, v := range o.raw["metadata"].(map[string]any) {
		meta[k] = v
	}
	meta["resourceVersion"] = m.Metadata.ResourceVersion
	raw["metadata"] = meta
	_, err = env.Call(http.MethodPut, item, env.AdminToken, raw)
	require.NoError(t, err, "PUT %s %s", o.Kind, o.Metadata.Name)
}

// applyYAML applies every document of a YAML text.
func applyYAML(t *testing.T, env *kubetest.Env, text string) {
	t.Helper()
	for _, o := range parseManifest(t, []byte(text)) {
		apply(t, env, o)
	}
}

// waitServed waits until the API serves the three broker kinds in ns.
func waitServed(t *testing.T, env *kubetest.Env, ns string) {
	t.Helper()
	for _, r := range []string{"brokerlisteners", "brokerauthentications", "brokerauthorizations"} {
		for _, v := range []string{"v1", "v1beta1"} {
			require.Eventually(t, func() bool {
				_, err := env.Call(http.MethodGet, "/apis/mqttbroker.iotoperations.azure.com/"+v+"/namespaces/"+ns+"/"+r, env.AdminToken, nil)
				return err == nil
			}, 30*time.Second, 100*time.Millisecond, "%s/%s not served", r, v)
		}
	}
}

// saToken mints a token of the ServiceAccount ns/name and writes it to a
// file, whose path it returns.
func saToken(t *testing.T, env *kubetest.Env, ns, name string) string {
	t.Helper()
	body, err := env.Call(http.MethodPost, "/api/v1/namespaces/"+ns+"/serviceaccounts/"+name+"/token", env.AdminToken, map[string]any{
		"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": map[string]any{"expirationSeconds": 3600},
	})
	require.NoError(t, err)
	var out struct {
		Status struct {
			Token string `json:"token"`
		} `json:"status"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &out))
	require.NotEmpty(t, out.Status.Token)
	p := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(p, []byte(out.Status.Token), 0o600))
	return p
}

// mergePatch sends a JSON merge patch to an object's path.
func mergePatch(t *testing.T, env *kubetest.Env, path string, patch any) {
	t.Helper()
	b, err := json.Marshal(patch)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPatch, env.URL+path, bytes.NewReader(b))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/merge-patch+json")
	req.Header.Set("Authorization", "Bearer "+env.AdminToken)
	resp, err := adminClient(t, env).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "PATCH %s", path)
}

// adminClient is an HTTP client that trusts the API server's CA.
func adminClient(t *testing.T, env *kubetest.Env) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(env.CAFile)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(pem))
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}
