package image_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// deployment is what the test reads of a Deployment.
type deployment struct {
	Kind string `json:"kind"`
	Spec struct {
		Template struct {
			Spec struct {
				SecurityContext struct {
					RunAsNonRoot *bool  `json:"runAsNonRoot"`
					RunAsUser    *int64 `json:"runAsUser"`
					RunAsGroup   *int64 `json:"runAsGroup"`
				} `json:"securityContext"`
				Containers []struct {
					Name            string `json:"name"`
					Image           string `json:"image"`
					SecurityContext struct {
						ReadOnlyRootFilesystem   *bool  `json:"readOnlyRootFilesystem"`
						AllowPrivilegeEscalation *bool  `json:"allowPrivilegeEscalation"`
						Privileged               *bool  `json:"privileged"`
						RunAsUser                *int64 `json:"runAsUser"`
						Capabilities             struct {
							Add  []string `json:"add"`
							Drop []string `json:"drop"`
						} `json:"capabilities"`
					} `json:"securityContext"`
				} `json:"containers"`
			} `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

// The Deployments under deploy/kubernetes run each image as the recipe
// builds it and as TestImage runs it: the user and group of the
// Containerfile's USER, non-root, a read-only root filesystem, no
// privilege escalation, every capability dropped.
func TestManifestsMatchImage(t *testing.T) {
	recipe, err := os.ReadFile(filepath.Join(deployDir, "Containerfile"))
	require.NoError(t, err)
	users := map[string]string{} // stage → USER
	stage := ""
	for line := range strings.Lines(string(recipe)) {
		f := strings.Fields(line)
		switch {
		case len(f) == 4 && f[0] == "FROM" && strings.EqualFold(f[2], "AS"):
			require.Equal(t, "scratch", f[1], "stage %s: nothing is pulled", f[3])
			stage = f[3]
		case len(f) == 2 && f[0] == "USER":
			users[stage] = f[1]
		}
	}
	want := strconv.Itoa(nonroot) + ":" + strconv.Itoa(nonroot)
	require.Equal(t, map[string]string{"gateway": want, "broker": want}, users)

	for _, name := range []string{"gateway", "broker"} {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(deployDir, "kubernetes", name+".yaml"))
			require.NoError(t, err)
			var deps []deployment
			for _, doc := range bytes.Split(data, []byte("\n---")) {
				var d deployment
				require.NoError(t, yaml.Unmarshal(doc, &d))
				if d.Kind == "Deployment" {
					deps = append(deps, d)
				}
			}
			require.Len(t, deps, 1)
			pod := deps[0].Spec.Template.Spec
			uid, gid, ok := strings.Cut(users[name], ":")
			require.True(t, ok)
			require.NotNil(t, pod.SecurityContext.RunAsNonRoot)
			require.True(t, *pod.SecurityContext.RunAsNonRoot)
			require.NotNil(t, pod.SecurityContext.RunAsUser)
			require.Equal(t, uid, strconv.FormatInt(*pod.SecurityContext.RunAsUser, 10), "runAsUser is the image's USER")
			require.NotNil(t, pod.SecurityContext.RunAsGroup)
			require.Equal(t, gid, strconv.FormatInt(*pod.SecurityContext.RunAsGroup, 10), "runAsGroup is the image's USER's group")
			require.Len(t, pod.Containers, 1)
			c := pod.Containers[0]
			require.Contains(t, c.Image, "/mqttauth-"+name+":", "the image of deploy/build-image.sh %s", name)
			sc := c.SecurityContext
			require.NotNil(t, sc.ReadOnlyRootFilesystem)
			require.True(t, *sc.ReadOnlyRootFilesystem)
			require.NotNil(t, sc.AllowPrivilegeEscalation)
			require.False(t, *sc.AllowPrivilegeEscalation)
			require.True(t, sc.Privileged == nil || !*sc.Privileged)
			require.Nil(t, sc.RunAsUser, "the pod's runAsUser, not another")
			require.Equal(t, []string{"ALL"}, sc.Capabilities.Drop)
			require.Empty(t, sc.Capabilities.Add)
		})
	}
}
