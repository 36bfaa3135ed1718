package authserver_test

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/customauth/authserver"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T, cfg authserver.Config) (*authserver.Server, *http.Client) {
	t.Helper()
	ca := authtest.NewRootCA(t, "CA")
	leaf := ca.Leaf(t, "server", authtest.WithIPs(net.ParseIP("127.0.0.1")), authtest.WithExtKeyUsage(x509.ExtKeyUsageServerAuth))
	srv, err := authserver.Start("127.0.0.1:0", authtest.ServerTLSConfig(t, leaf), authserver.NewHandler(cfg))
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	tr := &http.Transport{TLSClientConfig: authtest.ClientTLSConfig(t, ca, "127.0.0.1", nil)}
	t.Cleanup(tr.CloseIdleConnections)
	return srv, &http.Client{Transport: tr}
}

func post(t *testing.T, c *http.Client, url, ctype, body string) (int, string, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewBufferString(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", ctype)
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(data, &m)
	return resp.StatusCode, resp.Header.Get("Content-Type"), m
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestAPI(t *testing.T) {
	now := time.Date(2030, 5, 8, 20, 0, 0, 0, time.UTC)
	srv, c := start(t, authserver.Config{
		Now:         func() time.Time { return now },
		TokenMethod: "TOKEN",
		Users: map[string]authserver.User{
			"alice": {Password: "secret", Attributes: map[string]string{"group": "g1"}, Lifetime: time.Hour},
			"bob":   {Password: "pw"},
		},
		Tokens: map[string]string{"tok": "alice"},
	})
	url := srv.URL() + "?api-version=0.5.0"
	for _, tc := range []struct {
		name   string
		url    string
		ctype  string
		body   string
		status int
		want   map[string]any
	}{
		{"password_pass", url, "application/json", `{"type":"connect","username":"alice","password":"` + b64("secret") + `"}`, 200,
			map[string]any{"expiry": "2030-05-08T21:00:00Z", "attributes": map[string]any{"group": "g1"}}},
		{"no_expiry_empty_attributes", url, "application/json", `{"type":"connect","username":"bob","password":"` + b64("pw") + `"}`, 200,
			map[string]any{"attributes": map[string]any{}}},
		{"wrong_password_0x86", url, "application/json", `{"type":"connect","username":"alice","password":"` + b64("nope") + `"}`, 403,
			map[string]any{"reason": float64(0x86), "message": "bad user name or password"}},
		{"token_connect", url, "application/json", `{"type":"connect","enhancedAuthentication":{"method":"TOKEN","data":"` + b64("tok") + `"}}`, 200,
			map[string]any{"expiry": "2030-05-08T21:00:00Z", "attributes": map[string]any{"group": "g1"}}},
		{"token_reauth", url, "application/json", `{"type":"auth","enhancedAuthentication":{"method":"TOKEN","data":"` + b64("tok") + `"}}`, 200,
			map[string]any{"expiry": "2030-05-08T21:00:00Z", "attributes": map[string]any{"group": "g1"}}},
		{"unknown_token_0x87", url, "application/json", `{"type":"auth","enhancedAuthentication":{"method":"TOKEN","data":"` + b64("x") + `"}}`, 403,
			map[string]any{"reason": float64(0x87), "message": "unknown token"}},
		{"auth_without_token", url, "application/json", `{"type":"auth"}`, 403,
			map[string]any{"reason": float64(0x87), "message": "re-authentication needs a token"}},
		{"unsupported_version_422", srv.URL() + "?api-version=0.4.0", "application/json", `{"type":"connect"}`, 422,
			map[string]any{"supportedVersions": []any{"0.5.0"}}},
		{"no_version_422", srv.URL(), "application/json", `{"type":"connect"}`, 422,
			map[string]any{"supportedVersions": []any{"0.5.0"}}},
		{"malformed_400", url, "application/json", `{"type":`, 400, nil},
		{"text_400", url, "text/plain", `{"type":"connect"}`, 400, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, got := post(t, c, tc.url, tc.ctype, tc.body)
			require.Equal(t, tc.status, status)
			if tc.want != nil {
				require.Equal(t, tc.want, got)
			}
		})
	}
	resp, err := c.Get(url)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

func TestModesAndDownUp(t *testing.T) {
	srv, c := start(t, authserver.Config{Users: map[string]authserver.User{"a": {Password: "p"}}})
	h := srv.Handler()
	body := `{"type":"connect","username":"a","password":"` + b64("p") + `"}`
	url := srv.URL() + "?api-version=0.5.0"

	h.SetMode(authserver.DenyAll)
	status, _, m := post(t, c, url, "application/json", body)
	require.Equal(t, 403, status)
	require.Equal(t, float64(0x87), m["reason"])

	h.SetMode(authserver.Unsupported)
	status, _, _ = post(t, c, url, "application/json", body)
	require.Equal(t, 422, status)

	h.SetMode(authserver.InternalError)
	status, _, _ = post(t, c, url, "application/json", body)
	require.Equal(t, 500, status)

	h.SetMode(authserver.Normal)
	addr := srv.Addr()
	srv.Down()
	c.CloseIdleConnections()
	_, err := c.Post(url, "application/json", bytes.NewBufferString(body))
	require.Error(t, err, "down means connection refused")
	require.NoError(t, srv.Up())
	require.Equal(t, addr, srv.Addr(), "back on the same address")
	status, _, _ = post(t, c, url, "application/json", body)
	require.Equal(t, 200, status)
	require.EqualValues(t, 4, h.Requests())
}

func TestStartNeedsTLS(t *testing.T) {
	_, err := authserver.Start("127.0.0.1:0", nil, authserver.NewHandler(authserver.Config{}))
	require.ErrorContains(t, err, "HTTPS only")
}

func TestReplace(t *testing.T) {
	srv, c := start(t, authserver.Config{Users: map[string]authserver.User{"a": {Password: "p"}, "b": {Password: "q"}}})
	url := srv.URL() + "?api-version=0.5.0"
	login := func(u, p string) int {
		status, _, _ := post(t, c, url, "application/json", `{"type":"connect","username":"`+u+`","password":"`+b64(p)+`"}`)
		return status
	}
	require.Equal(t, 200, login("b", "q"))
	srv.Handler().Replace(authserver.Config{Users: map[string]authserver.User{"a": {Password: "p2"}}})
	require.Equal(t, 403, login("b", "q"), "a removed user can no longer log in")
	require.Equal(t, 403, login("a", "p"))
	require.Equal(t, 200, login("a", "p2"))
}
