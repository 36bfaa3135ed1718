// Package image holds the end-to-end test of the container image recipe
// under deploy/ (deploy/build-image.sh, deploy/Containerfile): the images
// of the example gateway and broker are built with buildah, twice, and
// must be identical; their contents are listed (the static binary, the
// passwd and group of user 65532, the CA bundle, nothing else: no shell);
// and they run under podman as the Kubernetes manifests run them (user
// 65532, read-only root filesystem, no capabilities, no privilege
// escalation), with /healthz, /readyz and an MQTT client connecting
// through them. The tests need root, buildah, podman and runc; without
// them they are skipped, or fail with CI=true.
package image
