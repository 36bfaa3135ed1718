package cluster_test

// The deployment under deploy/: every manifest passes a server-side dry
// run (POST ?dryRun=All, strict field validation) against a REAL
// kube-apiserver, the Deployments have the probes, the security context
// and the scrape annotations, the Role grants exactly what the Kubernetes
// source checks at start-up, and the image recipe's build script makes
// static binaries.

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/aioconfig"
	"github.com/mqttauth/mqttauth/satauth/kubetest"
)

// manifests are the files of deploy/kubernetes, in the order of the
// README's commands.
var manifests = []string{"crds.yaml", "rbac.yaml", "sat-rbac.yaml", "gateway-config.yaml", "gateway.yaml", "broker.yaml"}

func TestDeployManifestsDryRun(t *testing.T) {
	env := kubetest.Require(t)
	files, err := filepath.Glob(filepath.Join(deployDir, "*.yaml"))
	require.NoError(t, err)
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	require.ElementsMatch(t, manifests, names, "every manifest is checked")
	// The CRDs and the namespace exist for real first: objects of a kind
	// the API does not serve, or in a namespace that does not exist,
	// cannot be dry-run. The namespace is a new one, so that what other
	// tests created in mqttauth does not answer 409.
	for _, o := range readManifest(t, "crds.yaml") {
		create(t, env, o, false, true)
	}
	dryNS := fmt.Sprintf("mqttauth-dryrun-%d", time.Now().UnixNano()%1e9)
	for _, o := range readManifest(t, "rbac.yaml") {
		if o.Kind == "Namespace" {
			o.raw["metadata"].(map[string]any)["name"] = dryNS
			create(t, env, o, false, false)
		}
	}
	waitServed(t, env, dryNS)
	kinds := map[string]int{}
	for _, name := range manifests {
		for _, o := range readManifest(t, name) {
			kinds[o.Kind]++
			if o.Metadata.Namespace != "" {
				o.Metadata.Namespace = dryNS
				o.raw["metadata"].(map[string]any)["namespace"] = dryNS
			}
			if o.Kind == "Namespace" {
				continue // created above
			}
			t.Run(name+"/"+o.Kind+"/"+o.Metadata.Name, func(t *testing.T) {
				// Cluster-scoped objects the tests created for real (the CRDs)
				// answer 409 after validation and admission: a pass too.
				create(t, env, o, true, o.Metadata.Namespace == "")
			})
		}
	}
	for _, k := range []string{"CustomResourceDefinition", "Namespace", "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding",
		"Deployment", "Service", "PodDisruptionBudget", "BrokerListener", "BrokerAuthentication", "BrokerAuthorization"} {
		require.Positive(t, kinds[k], "no %s in deploy/kubernetes", k)
	}
}

func TestDeployDeployments(t *testing.T) {
	for _, name := range []string{"gateway.yaml", "broker.yaml"} {
		t.Run(name, func(t *testing.T) {
			var dep map[string]any
			for _, o := range readManifest(t, name) {
				if o.Kind == "Deployment" {
					dep = o.raw
				}
			}
			require.NotNil(t, dep)
			get := func(m any, path ...string) any {
				for _, p := range path {
					m = m.(map[string]any)[p]
				}
				return m
			}
			tmpl := get(dep, "spec", "template")
			ann := get(tmpl, "metadata", "annotations").(map[string]any)
			require.Equal(t, "true", ann["prometheus.io/scrape"])
			require.Equal(t, "9090", ann["prometheus.io/port"])
			require.Equal(t, "/metrics", ann["prometheus.io/path"])
			pod := get(tmpl, "spec").(map[string]any)
			require.Equal(t, "mqttauth", pod["serviceAccountName"])
			require.Equal(t, true, get(pod, "securityContext", "runAsNonRoot"))
			c := pod["containers"].([]any)[0].(map[string]any)
			require.Equal(t, "/healthz", get(c, "livenessProbe", "httpGet", "path"))
			require.Equal(t, "/readyz", get(c, "readinessProbe", "httpGet", "path"))
			sc := c["securityContext"].(map[string]any)
			require.Equal(t, true, sc["readOnlyRootFilesystem"])
			require.Equal(t, false, sc["allowPrivilegeEscalation"])
			var args []string
			for _, a := range c["args"].([]any) {
				args = append(args, a.(string))
			}
			require.Contains(t, args, "-config-from-cluster=$(POD_NAMESPACE)")
			require.Contains(t, args, "-admin-addr=:9090", "the probes reach the admin listener on the pod's address")
			require.Empty(t, pod["volumes"], "no volume: the referenced ConfigMaps and Secrets are read through the API and held in memory")
		})
	}
}

// The Role of rbac.yaml grants exactly aioconfig.ClusterPermissions (which
// the source checks at start-up): nothing more, nothing less.
func TestDeployRoleIsExact(t *testing.T) {
	var granted []string
	for _, o := range readManifest(t, "rbac.yaml") {
		if o.Kind != "Role" {
			continue
		}
		for _, r := range o.raw["rules"].([]any) {
			r := r.(map[string]any)
			for _, g := range r["apiGroups"].([]any) {
				for _, res := range r["resources"].([]any) {
					for _, v := range r["verbs"].([]any) {
						granted = append(granted, aioconfig.Permission{Verb: v.(string), Group: g.(string), Resource: res.(string)}.String())
					}
				}
			}
		}
	}
	var needed []string
	for _, p := range aioconfig.ClusterPermissions() {
		needed = append(needed, p.String())
	}
	slices.Sort(granted)
	slices.Sort(needed)
	require.Equal(t, needed, granted)
}

// The image recipe (deploy/build-image.sh) takes its binaries from
// deploy/build-static.sh; the binaries it makes have no interpreter and no
// dynamic section. (examples/e2e/image builds and runs the images.)
func TestImageBinariesStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the example binaries: not in -short mode")
	}
	recipe, err := os.ReadFile(filepath.Join(deployDir, "..", "Containerfile"))
	require.NoError(t, err)
	for _, want := range []string{"FROM scratch AS gateway", "FROM scratch AS broker", "COPY bin/gateway /usr/local/bin/gateway", "USER 65532:65532", `ENTRYPOINT ["/usr/local/bin/gateway"]`, `ENTRYPOINT ["/usr/local/bin/broker"]`} {
		require.Contains(t, string(recipe), want)
	}
	out := t.TempDir()
	cmd := exec.Command(filepath.Join(deployDir, "..", "build-static.sh"), out)
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", b)
	for _, bin := range []string{"gateway", "broker"} {
		f, err := elf.Open(filepath.Join(out, bin))
		require.NoError(t, err)
		for _, p := range f.Progs {
			require.NotEqual(t, elf.PT_INTERP, p.Type, "%s has an interpreter: not static", bin)
			require.NotEqual(t, elf.PT_DYNAMIC, p.Type, "%s has a dynamic section: not static", bin)
		}
		libs, err := f.ImportedLibraries()
		require.NoError(t, err)
		require.Empty(t, libs, bin)
		require.NoError(t, f.Close())
	}
}
