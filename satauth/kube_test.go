package satauth_test

// Integration tests against a real kube-apiserver and etcd, built by
// scripts/kube-testenv and started once per test package on loopback by
// package satauth/kubetest.

import (
	"context"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/satauth"
	"github.com/mqttauth/mqttauth/satauth/kubetest"
)

const kubeIssuer = kubetest.Issuer

// kubeEnv is the shared kubetest environment with the accounts these tests
// use.
type kubeEnv struct{ *kubetest.Env }

var (
	kubeSetupOnce sync.Once
	kubeSetupErr  error
)

// requireKube returns the shared environment (see kubetest.Require: a
// missing binary skips the test, or fails it with CI=true), set up once:
//   - default/mqtt-broker: the broker, bound to system:auth-delegator and
//     a ClusterRole that gets serviceaccounts;
//   - default/no-rbac: a broker identity without those bindings;
//   - default/sensor (annotated) and default/intruder: clients.
func requireKube(t *testing.T) kubeEnv {
	t.Helper()
	env := kubetest.Require(t)
	kubeSetupOnce.Do(func() {
		for _, sa := range []struct {
			name string
			ann  map[string]string
		}{
			{"mqtt-broker", nil},
			{"no-rbac", nil},
			{"sensor", map[string]string{"aio-broker-auth/group": "authz-sat", "aio-broker-auth/floor": "floor1", "other/x": "y"}},
			{"intruder", nil},
		} {
			if kubeSetupErr = env.CreateServiceAccount(sa.name, sa.ann); kubeSetupErr != nil {
				return
			}
		}
		kubeSetupErr = env.BindBroker("mqtt-broker")
	})
	require.NoError(t, kubeSetupErr)
	return kubeEnv{env}
}

// stopKube kills the processes and removes the directory; TestMain calls it.
func stopKube() { kubetest.StopShared() }

func (e kubeEnv) createSA(name string, ann map[string]string) error {
	return e.CreateServiceAccount(name, ann)
}

func (e kubeEnv) admin(method, path string, body any) error { return e.Admin(method, path, body) }

func (e kubeEnv) token(t *testing.T, name string, audiences []string, seconds int) string {
	t.Helper()
	return e.Token(t, name, audiences, seconds)
}

// brokerConfig returns a Config whose broker identity is default/name.
func (e kubeEnv) brokerConfig(t *testing.T, name string, mode satauth.Mode) satauth.Config {
	t.Helper()
	tokenFile := e.TokenFile(t, name, nil, 3600)
	return satauth.Config{
		Audiences: []string{"aio-mq", "my-audience"},
		Mode:      mode,
		APIServer: e.URL,
		CAFile:    e.CAFile,
		TokenFile: tokenFile,
		Issuer:    kubeIssuer,
	}
}

func newKubeAuth(t *testing.T, cfg satauth.Config) (*satauth.Authenticator, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	cfg.Logger = newTextLogger(logs)
	a, err := satauth.New(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(a.Close)
	return a, logs
}

func TestKube(t *testing.T) {
	env := requireKube(t)

	modes(t, func(t *testing.T, mode satauth.Mode) {
		a, logs := newKubeAuth(t, env.brokerConfig(t, "mqtt-broker", mode))

		t.Run("pass_with_annotations", func(t *testing.T) {
			before := time.Now()
			r := connect(a, env.token(t, "sensor", []string{"aio-mq"}, 600))
			require.Equal(t, auth.Pass, r.Outcome, "%v", r.Err)
			require.Equal(t, "system:serviceaccount:default:sensor", r.Principal.Username())
			require.Equal(t, map[string]string{"group": "authz-sat", "floor": "floor1"}, attrs(r.Principal))
			exp := r.Principal.Expiry()
			require.WithinDuration(t, before.Add(600*time.Second), exp, 5*time.Second)
		})
		t.Run("second_audience", func(t *testing.T) {
			r := connect(a, env.token(t, "sensor", []string{"my-audience"}, 600))
			require.Equal(t, auth.Pass, r.Outcome, "%v", r.Err)
		})
		t.Run("wrong_audience", func(t *testing.T) {
			r := connect(a, env.token(t, "sensor", []string{"someone-else"}, 600))
			require.Equal(t, auth.Fail, r.Outcome)
			require.ErrorIs(t, r.Err, satauth.ErrAudience)
		})
		t.Run("api_audience_token_refused", func(t *testing.T) {
			// A token for the API server itself is not for the broker.
			r := connect(a, env.token(t, "sensor", nil, 600))
			require.Equal(t, auth.Fail, r.Outcome)
			require.ErrorIs(t, r.Err, satauth.ErrAudience)
		})
		t.Run("expired", func(t *testing.T) {
			// TokenRequest's shortest expiry is 10 minutes: judge the token
			// 11 minutes from now.
			tok := env.token(t, "sensor", []string{"aio-mq"}, 600)
			cfg := env.brokerConfig(t, "mqtt-broker", mode)
			cfg.Now = func() time.Time { return time.Now().Add(11 * time.Minute) }
			b, _ := newKubeAuth(t, cfg)
			r := connect(b, tok)
			require.Equal(t, auth.Fail, r.Outcome)
			require.ErrorIs(t, r.Err, satauth.ErrExpired)
		})
		t.Run("deleted_service_account", func(t *testing.T) {
			name := "temp-" + strings.ToLower(mode.String())
			require.NoError(t, env.createSA(name, nil))
			tok := env.token(t, name, []string{"aio-mq"}, 600)
			require.NoError(t, env.admin(http.MethodDelete, "/api/v1/namespaces/default/serviceaccounts/"+name, nil))
			b, _ := newKubeAuth(t, env.brokerConfig(t, "mqtt-broker", mode))
			var r auth.Result
			require.Eventually(t, func() bool {
				r = connect(b, tok)
				return r.Outcome == auth.Fail
			}, 10*time.Second, 200*time.Millisecond)
			if mode == satauth.ModeLocal {
				require.ErrorIs(t, r.Err, satauth.ErrServiceAccountNotFound)
			} else {
				require.ErrorIs(t, r.Err, satauth.ErrNotAuthenticated)
			}
		})
		t.Run("forged", func(t *testing.T) {
			tok := env.token(t, "sensor", []string{"aio-mq"}, 600)
			parts := strings.Split(tok, ".")
			forged := parts[0] + "." + b64(`{"aud":["aio-mq"],"exp":9999999999,"iss":"`+kubeIssuer+
				`","sub":"system:serviceaccount:kube-system:admin","kubernetes.io":{"namespace":"kube-system","serviceaccount":{"name":"admin","uid":"x"}}}`) + "." + parts[2]
			r := connect(a, forged)
			require.Equal(t, auth.Fail, r.Outcome)
		})
		t.Run("reauth", func(t *testing.T) {
			m, err := auth.NewManager(auth.Config{Authenticator: a, Authorizer: auth.AllowAuthenticated, Logger: newDiscardLogger()})
			require.NoError(t, err)
			conn := authtest.NewConn()
			s := m.NewSession(conn)
			defer s.Close()
			ctx := context.Background()
			resp := s.Connect(ctx, &auth.Request{ClientID: "c", AuthMethod: satauth.Method,
				AuthData: []byte(env.token(t, "sensor", []string{"aio-mq"}, 600)), ProtocolVersion: 5})
			require.Equal(t, auth.Success, resp.Packet.Code, "%v", resp.Err)
			first := s.Principal().Expiry()
			resp = s.Auth(ctx, auth.Packet{Type: auth.AUTH, Code: auth.ReAuthenticate, Method: satauth.Method,
				Data: []byte(env.token(t, "sensor", []string{"aio-mq"}, 1200))})
			require.Equal(t, auth.Success, resp.Packet.Code, "%v", resp.Err)
			require.True(t, s.Principal().Expiry().After(first.Add(500*time.Second)))
			resp = s.Auth(ctx, auth.Packet{Type: auth.AUTH, Code: auth.ReAuthenticate, Method: satauth.Method,
				Data: []byte(env.token(t, "intruder", []string{"aio-mq"}, 600))})
			require.Equal(t, auth.NotAuthorized, resp.Packet.Code)
			require.True(t, resp.Close)
		})
		require.NotContains(t, logs.String(), "eyJ") // no JWT in the logs
	})

	t.Run("broker_without_rbac", func(t *testing.T) {
		a, logs := newKubeAuth(t, env.brokerConfig(t, "no-rbac", satauth.ModeTokenReview))
		r := connect(a, env.token(t, "sensor", []string{"aio-mq"}, 600))
		require.Equal(t, auth.Unavailable, r.Outcome)
		require.ErrorIs(t, r.Err, satauth.ErrBrokerForbidden)
		require.Contains(t, r.Err.Error(), "system:auth-delegator")
		require.Contains(t, logs.String(), "level=ERROR")
		require.Contains(t, logs.String(), "system:auth-delegator")
	})
	t.Run("broker_without_serviceaccount_rbac_local", func(t *testing.T) {
		a, logs := newKubeAuth(t, env.brokerConfig(t, "no-rbac", satauth.ModeLocal))
		r := connect(a, env.token(t, "sensor", []string{"aio-mq"}, 600))
		require.Equal(t, auth.Unavailable, r.Outcome, "%v", r.Err)
		require.ErrorIs(t, r.Err, satauth.ErrBrokerForbidden)
		require.Contains(t, logs.String(), "get on serviceaccounts")
	})
	t.Run("broker_token_wrong", func(t *testing.T) {
		cfg := env.brokerConfig(t, "mqtt-broker", satauth.ModeTokenReview)
		require.NoError(t, os.WriteFile(cfg.TokenFile, []byte("not-a-token"), 0o600))
		a, logs := newKubeAuth(t, cfg)
		r := connect(a, env.token(t, "sensor", []string{"aio-mq"}, 600))
		require.Equal(t, auth.Unavailable, r.Outcome)
		require.ErrorIs(t, r.Err, satauth.ErrBrokerUnauthorized)
		require.Contains(t, logs.String(), "TokenFile")
	})
	t.Run("local_issuer_is_the_configured_one", func(t *testing.T) {
		// Discovery is fetched from the loopback URL; its issuer is the
		// in-cluster name, which must match Config.Issuer.
		cfg := env.brokerConfig(t, "mqtt-broker", satauth.ModeLocal)
		cfg.Issuer = env.URL
		a, _ := newKubeAuth(t, cfg)
		r := connect(a, env.token(t, "sensor", []string{"aio-mq"}, 600))
		require.Equal(t, auth.Unavailable, r.Outcome)
		require.ErrorContains(t, r.Err, kubeIssuer)
	})
}
