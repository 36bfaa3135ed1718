package cluster_test

import (
	"testing"

	"github.com/mqttauth/mqttauth/examples/e2e/proc"
	"github.com/mqttauth/mqttauth/satauth/kubetest"
)

func TestMain(m *testing.M) { proc.Main(m, kubetest.StopShared) }
