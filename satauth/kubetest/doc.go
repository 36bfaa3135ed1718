// Package kubetest runs a real etcd and kube-apiserver on loopback for
// tests, from the binaries that scripts/kube-testenv builds, and makes the
// few API calls the tests of K8S-SAT need: ServiceAccounts with
// annotations, TokenRequest, and the RBAC a broker's own identity needs
// (system:auth-delegator for TokenReview, get on serviceaccounts). It is
// meant for tests only.
//
// One environment is shared by all the tests of a test binary: Require
// starts it on first use (or skips the test when the binaries are missing,
// and fails it when CI=true), and the package's TestMain calls StopShared.
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		kubetest.StopShared()
//		os.Exit(code)
//	}
//
//	func TestSAT(t *testing.T) {
//		env := kubetest.Require(t)
//		require.NoError(t, env.CreateServiceAccount("sensor", map[string]string{"aio-broker-auth/group": "sensors"}))
//		token := env.Token(t, "sensor", []string{"aio-mq"}, 600)
//		...
//	}
//
// Everything happens in the namespace "default". The API server's
// TokenRequest refuses lifetimes under 600 s; tests that need a token to
// expire quickly use package satauth/sattest instead.
package kubetest
