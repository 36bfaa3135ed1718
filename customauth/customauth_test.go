package customauth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/customauth"
	"github.com/mqttauth/mqttauth/customauth/authserver"
)

func TestRequestBody(t *testing.T) {
	var (
		mu     sync.Mutex
		bodies []map[string]any
		urls   []string
		hdrs   []http.Header
	)
	_, cfg := handlerServer(t, func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		require.NoError(t, json.NewDecoder(r.Body).Decode(&m))
		mu.Lock()
		bodies, urls, hdrs = append(bodies, m), append(urls, r.URL.String()), append(hdrs, r.Header.Clone())
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"attributes":{}}`)
	})
	cfg.Headers = http.Header{"X-Api-Key": {"k1"}}
	a := newAuthn(t, cfg)
	leaf := authtest.NewRootCA(t, "Client CA").Leaf(t, "dev")

	req := connectReq("alice", "pa\x00ss")
	req.AuthMethod, req.AuthData = "CUSTOM", []byte{0xff, 0x00}
	req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf.Cert}}
	require.Equal(t, auth.Pass, authenticate(a, req).Outcome)
	require.Equal(t, auth.Pass, authenticate(a, &auth.Request{ClientID: "c", Username: "alice", AuthMethod: "CUSTOM", AuthData: []byte("t2"), Reauth: true}).Outcome)
	require.Equal(t, auth.Pass, authenticate(a, &auth.Request{ClientID: "c"}).Outcome)

	require.Len(t, bodies, 3)
	require.Equal(t, "/?api-version=0.5.0", urls[0])
	require.Equal(t, "application/json", hdrs[0].Get("Content-Type"))
	require.Equal(t, "k1", hdrs[0].Get("X-Api-Key"))
	require.Equal(t, map[string]any{
		"type":     "connect",
		"username": "alice",
		"password": base64.StdEncoding.EncodeToString([]byte("pa\x00ss")),
		"certs":    string(authtest.CertsPEM(leaf.Cert)),
		"enhancedAuthentication": map[string]any{
			"method": "CUSTOM",
			"data":   base64.StdEncoding.EncodeToString([]byte{0xff, 0x00}),
		},
	}, bodies[0])
	require.Equal(t, map[string]any{
		"type":                   "auth",
		"enhancedAuthentication": map[string]any{"method": "CUSTOM", "data": base64.StdEncoding.EncodeToString([]byte("t2"))},
	}, bodies[1], "re-authentication sends an auth request, without the CONNECT credentials")
	require.Equal(t, map[string]any{"type": "connect"}, bodies[2], "absent fields are left out")
}

// Every kind of answer, and what it becomes.
func TestResponses(t *testing.T) {
	expiry := "2030-05-08T20:04:16+00:00"
	cases := []struct {
		name    string
		status  []int    // status of each answer in turn
		ctype   string   // content type ("" application/json)
		body    []string // body of each answer in turn
		outcome auth.Outcome
		code    auth.ReasonCode
		errIs   error
		attrs   map[string]string
		expiry  string
		calls   int
	}{
		{name: "200_pass_with_expiry", status: []int{200}, body: []string{`{"expiry":"` + expiry + `","attributes":{"group":"g1","floor":"2"}}`}, outcome: auth.Pass, attrs: map[string]string{"group": "g1", "floor": "2"}, expiry: expiry, calls: 1},
		{name: "200_pass_no_expiry", status: []int{200}, body: []string{`{"attributes":{}}`}, outcome: auth.Pass, attrs: map[string]string{}, calls: 1},
		{name: "200_charset_param_ok", status: []int{200}, ctype: "application/json; charset=utf-8", body: []string{`{"attributes":{}}`}, outcome: auth.Pass, attrs: map[string]string{}, calls: 1},
		{name: "200_wrong_content_type", status: []int{200}, ctype: "text/plain", body: []string{`{"attributes":{}}`}, outcome: auth.Unavailable, errIs: customauth.ErrBadResponse, calls: 1},
		{name: "200_malformed_json", status: []int{200}, body: []string{`{"attributes":`}, outcome: auth.Unavailable, errIs: customauth.ErrBadResponse, calls: 1},
		{name: "200_empty_body", status: []int{200}, body: []string{``}, outcome: auth.Unavailable, errIs: customauth.ErrBadResponse, calls: 1},
		{name: "200_not_an_object", status: []int{200}, body: []string{`["attributes"]`}, outcome: auth.Unavailable, errIs: customauth.ErrBadResponse, calls: 1},
		{name: "200_no_attributes", status: []int{200}, body: []string{`{"expiry":"` + expiry + `"}`}, outcome: auth.Unavailable, errIs: customauth.ErrBadResponse, calls: 1},
		{name: "200_null_attributes", status: []int{200}, body: []string{`{"attributes":null}`}, outcome: auth.Unavailable, errIs: customauth.ErrBadResponse, calls: 1},
		{name: "200_trailing_data", status: []int{200}, body: []string{`{"attributes":{}} {}`}, outcome: auth.Unavailable, errIs: customauth.ErrBadResponse, calls: 1},
		{name: "200_bad_expiry", status: []int{200}, body: []string{`{"expiry":"tomorrow","attributes":{}}`}, outcome: auth.Unavailable, errIs: customauth.ErrBadResponse, calls: 1},
		{name: "200_numeric_expiry", status: []int{200}, body: []string{`{"expiry":1700000000,"attributes":{}}`}, outcome: auth.Unavailable, errIs: customauth.ErrBadResponse, calls: 1},
		{name: "200_number_attribute", status: []int{200}, body: []string{`{"attributes":{"floor":2}}`}, outcome: auth.Unavailable, errIs: customauth.ErrBadResponse, calls: 1},
		{name: "200_object_attribute", status: []int{200}, body: []string{`{"attributes":{"a":{"b":"c"}}}`}, outcome: auth.Unavailable, errIs: customauth.ErrBadResponse, calls: 1},
		{name: "200_null_attribute", status: []int{200}, body: []string{`{"attributes":{"a":null}}`}, outcome: auth.Unavailable, errIs: customauth.ErrBadResponse, calls: 1},
		{name: "200_oversized", status: []int{200}, body: []string{`{"attributes":{"a":"` + strings.Repeat("x", 70<<10) + `"}}`}, outcome: auth.Unavailable, errIs: customauth.ErrBadResponse, calls: 1},
		{name: "403_reason_kept", status: []int{403}, body: []string{`{"reason":134,"message":"bad password"}`}, outcome: auth.Fail, code: auth.BadUserNameOrPassword, errIs: customauth.ErrDenied, calls: 1},
		{name: "403_banned", status: []int{403}, body: []string{`{"reason":138}`}, outcome: auth.Fail, code: auth.Banned, errIs: customauth.ErrDenied, calls: 1},
		{name: "403_disconnect_only_code_0x87", status: []int{403}, body: []string{`{"reason":160}`}, outcome: auth.Fail, code: auth.NotAuthorized, calls: 1},
		{name: "403_success_code_0x87", status: []int{403}, body: []string{`{"reason":0}`}, outcome: auth.Fail, code: auth.NotAuthorized, calls: 1},
		{name: "403_out_of_range_0x87", status: []int{403}, body: []string{`{"reason":391}`}, outcome: auth.Fail, code: auth.NotAuthorized, calls: 1},
		{name: "403_negative_0x87", status: []int{403}, body: []string{`{"reason":-121}`}, outcome: auth.Fail, code: auth.NotAuthorized, calls: 1},
		{name: "403_garbage_still_fails", status: []int{403}, body: []string{`nope`}, outcome: auth.Fail, code: auth.NotAuthorized, errIs: customauth.ErrDenied, calls: 1},
		{name: "422_retry_once_then_pass", status: []int{422, 200}, body: []string{`{"supportedVersions":["0.5.0"]}`, `{"attributes":{}}`}, outcome: auth.Pass, attrs: map[string]string{}, calls: 2},
		{name: "422_twice_unavailable", status: []int{422, 422}, body: []string{`{"supportedVersions":["0.5.0"]}`, `{"supportedVersions":["0.5.0"]}`}, outcome: auth.Unavailable, errIs: customauth.ErrVersion, calls: 2},
		{name: "422_no_common_version", status: []int{422}, body: []string{`{"supportedVersions":["1.0.0","0.6.0"]}`}, outcome: auth.Unavailable, errIs: customauth.ErrVersion, calls: 1},
		{name: "422_malformed", status: []int{422}, body: []string{`{`}, outcome: auth.Unavailable, errIs: customauth.ErrBadResponse, calls: 1},
		{name: "400_text", status: []int{400}, ctype: "text/plain", body: []string{"bad request"}, outcome: auth.Unavailable, calls: 1},
		{name: "405_text", status: []int{405}, ctype: "text/plain", body: []string{"method not allowed"}, outcome: auth.Unavailable, calls: 1},
		{name: "404", status: []int{404}, body: []string{""}, outcome: auth.Unavailable, calls: 1},
		{name: "500", status: []int{500}, body: []string{"boom"}, outcome: auth.Unavailable, errIs: customauth.ErrServer, calls: 1},
		{name: "503", status: []int{503}, body: []string{""}, outcome: auth.Unavailable, errIs: customauth.ErrServer, calls: 1},
		{name: "302_not_followed", status: []int{302}, body: []string{""}, outcome: auth.Unavailable, calls: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			_, cfg := handlerServer(t, func(w http.ResponseWriter, r *http.Request) {
				i := int(calls.Add(1)) - 1
				i = min(i, len(tc.status)-1)
				ct := tc.ctype
				if ct == "" {
					ct = "application/json"
				}
				w.Header().Set("Content-Type", ct)
				if tc.status[i] == 302 {
					w.Header().Set("Location", "https://elsewhere.invalid/")
				}
				w.WriteHeader(tc.status[i])
				fmt.Fprint(w, tc.body[i])
			})
			a := newAuthn(t, cfg)
			r := authenticate(a, connectReq("alice", "secret"))
			require.Equal(t, tc.outcome, r.Outcome, "err: %v", r.Err)
			require.Equal(t, tc.calls, int(calls.Load()), "requests made")
			if tc.errIs != nil {
				require.ErrorIs(t, r.Err, tc.errIs)
			}
			switch r.Outcome {
			case auth.Fail:
				require.Equal(t, tc.code, r.Code)
			case auth.Pass:
				p := r.Principal
				require.Equal(t, "alice", p.Username())
				require.Equal(t, "alice-client", p.ClientID())
				require.Equal(t, customauth.DefaultMethodName, p.Method())
				got := map[string]string{}
				for k, v := range p.Attributes() {
					got[k] = v
				}
				require.Equal(t, tc.attrs, got)
				if tc.expiry != "" {
					want, _ := time.Parse(time.RFC3339, tc.expiry)
					require.True(t, want.Equal(p.Expiry()))
				} else {
					require.True(t, p.Expiry().IsZero())
				}
			case auth.Unavailable:
				require.Error(t, r.Err)
				require.NotContains(t, r.Err.Error(), "secret", "no credential in errors")
			}
		})
	}
}

func TestTransportFailures(t *testing.T) {
	p := newPKI(t)
	t.Run("connection_refused", func(t *testing.T) {
		srv := startServer(t, p, authserver.Config{})
		srv.Down()
		a := newAuthn(t, customauth.Config{Endpoint: srv.URL(), RootCAs: p.ca.Pool()})
		r := authenticate(a, connectReq("alice", "secret"))
		require.Equal(t, auth.Unavailable, r.Outcome)
		require.ErrorIs(t, r.Err, customauth.ErrServer)
	})
	t.Run("unknown_server_ca", func(t *testing.T) {
		srv := startServer(t, p, authserver.Config{})
		a := newAuthn(t, customauth.Config{Endpoint: srv.URL(), RootCAs: authtest.NewRootCA(t, "Other CA").Pool()})
		r := authenticate(a, connectReq("alice", "secret"))
		require.Equal(t, auth.Unavailable, r.Outcome)
		require.ErrorIs(t, r.Err, customauth.ErrServer)
		require.ErrorContains(t, r.Err, "certificate")
	})
	t.Run("timeout_ceiling", func(t *testing.T) {
		srv := startServer(t, p, authserver.Config{})
		srv.Handler().SetMode(authserver.Hang)
		a := newAuthn(t, customauth.Config{Endpoint: srv.URL(), RootCAs: p.ca.Pool(), Timeout: 100 * time.Millisecond})
		start := time.Now()
		r := authenticate(a, connectReq("alice", "secret"))
		require.Equal(t, auth.Unavailable, r.Outcome)
		require.ErrorIs(t, r.Err, customauth.ErrServer)
		require.Less(t, time.Since(start), 5*time.Second)
	})
	t.Run("context_deadline", func(t *testing.T) {
		srv := startServer(t, p, authserver.Config{})
		srv.Handler().SetMode(authserver.Hang)
		a := newAuthn(t, customauth.Config{Endpoint: srv.URL(), RootCAs: p.ca.Pool(), Timeout: time.Minute})
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		r := a.Authenticate(ctx, connectReq("alice", "secret"))
		require.Equal(t, auth.Unavailable, r.Outcome)
	})
	t.Run("mtls_to_the_server", func(t *testing.T) {
		brokerCA := authtest.NewRootCA(t, "Broker CA")
		broker := brokerCA.Leaf(t, "broker")
		tc := authtest.ServerTLSConfig(t, p.server)
		tc.ClientAuth, tc.ClientCAs = tls.RequireAndVerifyClientCert, brokerCA.Pool()
		srv, err := authserver.Start("127.0.0.1:0", tc, authserver.NewHandler(authserver.Config{Users: map[string]authserver.User{"alice": {Password: "secret"}}}))
		require.NoError(t, err)
		t.Cleanup(srv.Close)

		without := newAuthn(t, customauth.Config{Endpoint: srv.URL(), RootCAs: p.ca.Pool()})
		require.Equal(t, auth.Unavailable, authenticate(without, connectReq("alice", "secret")).Outcome)
		cert := broker.TLSCertificate()
		with := newAuthn(t, customauth.Config{Endpoint: srv.URL(), RootCAs: p.ca.Pool(), ClientCertificate: &cert})
		require.Equal(t, auth.Pass, authenticate(with, connectReq("alice", "secret")).Outcome)
	})
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  customauth.Config
		err  string
	}{
		{"no_endpoint", customauth.Config{}, "Endpoint is required"},
		{"plain_http", customauth.Config{Endpoint: "http://auth.local/"}, "clear text"},
		{"other_scheme", customauth.Config{Endpoint: "ftp://auth.local/"}, "scheme"},
		{"no_host", customauth.Config{Endpoint: "https:///x"}, "no host"},
		{"userinfo", customauth.Config{Endpoint: "https://u:p@auth.local/"}, "user information"},
		{"content_type_header", customauth.Config{Endpoint: "https://auth.local/", Headers: http.Header{"Content-Type": {"x"}}}, "Content-Type"},
		{"negative", customauth.Config{Endpoint: "https://auth.local/", Timeout: -1}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := customauth.New(tc.cfg)
			require.ErrorContains(t, err, tc.err)
		})
	}
	a, err := customauth.New(customauth.Config{Endpoint: "http://127.0.0.1:1/", InsecureAllowHTTP: true, Logger: discard})
	require.NoError(t, err, "plain HTTP with the loud switch")
	require.Equal(t, customauth.APIVersion, a.Version())
}

// Custom authentication treats every client as relevant.
func TestEveryClientRelevant(t *testing.T) {
	p := newPKI(t)
	srv := startServer(t, p, authserver.Config{})
	a := newAuthn(t, customauth.Config{Endpoint: srv.URL(), RootCAs: p.ca.Pool()})
	for _, req := range []*auth.Request{{}, {AuthMethod: "K8S-SAT", AuthData: []byte("tok")}, connectReq("nobody", "x")} {
		r := authenticate(a, req)
		require.NotEqual(t, auth.NotRelevant, r.Outcome)
		require.Equal(t, auth.Fail, r.Outcome)
	}
}
