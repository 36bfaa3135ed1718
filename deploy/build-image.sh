#!/bin/sh
# Builds the container image of the example gateway or broker
# (deploy/Containerfile, FROM scratch) with buildah, or podman with
# BUILDER=podman, from a context it prepares in a temporary directory:
#
#   bin/gateway or bin/broker  the static binary (deploy/build-static.sh;
#                              -context: both)
#   rootfs/etc/passwd, group   user and group 65532 nonroot (deploy/rootfs)
#   rootfs/etc/ssl/certs/ca-certificates.crt
#                              the CA bundle of the build machine
#                              (Debian's ca-certificates; CA_BUNDLE=FILE
#                              for another)
#
#   deploy/build-image.sh gateway mqttauth-gateway:dev [BUILDER-FLAGS...]
#   deploy/build-image.sh broker  mqttauth-broker:dev
#   deploy/build-image.sh -context DIR   # only prepare the context in DIR
#
# Reproducible: the image's created time and the time of every file in it
# is SOURCE_DATE_EPOCH (by default the time of the checkout's HEAD commit,
# 0 outside git), file modes do not depend on the umask or the checkout,
# the owner is 0:0, and the binaries are byte-identical from build to
# build (build-static.sh): two builds of one commit with the same Go
# toolchain, ca-certificates and buildah give the same image ID and the
# same manifest digest (examples/e2e/image builds twice and compares).
# With Docker, prepare the context with -context and build it with
# docker build -f DIR/Containerfile --target gateway DIR (BuildKit needs
# SOURCE_DATE_EPOCH and rewrite-timestamp=true to be reproducible).
set -eu
root="$(cd "$(dirname "$0")/.." && pwd)"

usage() {
	echo "usage: build-image.sh gateway|broker TAG [BUILDER-FLAGS...]" >&2
	echo "       build-image.sh -context DIR" >&2
	exit 2
}

# stage DIR [PROGRAM]: the build context, with the binary of PROGRAM or,
# without, of both.
stage() {
	dir="$1"
	shift
	mkdir -p "$dir/bin" "$dir/rootfs/etc/ssl/certs"
	"$root/deploy/build-static.sh" "$dir/bin" "$@"
	cp "$root/deploy/rootfs/etc/passwd" "$root/deploy/rootfs/etc/group" "$dir/rootfs/etc/"
	cp "${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}" "$dir/rootfs/etc/ssl/certs/ca-certificates.crt"
	cp "$root/deploy/Containerfile" "$dir/Containerfile"
	find "$dir/rootfs" -type d -exec chmod 0755 {} +
	find "$dir/rootfs" -type f -exec chmod 0644 {} +
	chmod 0755 "$dir/bin" "$dir/bin/"*
}

[ $# -ge 2 ] || usage
case "$1" in
-context)
	[ $# -eq 2 ] || usage
	stage "$2"
	exit 0
	;;
gateway | broker) ;;
*) usage ;;
esac
target="$1"
tag="$2"
shift 2

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH="$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)"
fi
builder="${BUILDER:-buildah}"
case "$builder" in
buildah | podman) ;;
*)
	echo "build-image.sh: BUILDER=$builder: buildah or podman (for docker, see -context)" >&2
	exit 2
	;;
esac

ctx="$(mktemp -d "${TMPDIR:-/tmp}/mqttauth-image.XXXXXX")"
trap 'rm -rf "$ctx"' EXIT
stage "$ctx" "$target"
"$builder" build --timestamp "$SOURCE_DATE_EPOCH" --target "$target" \
	-f "$ctx/Containerfile" -t "$tag" "$@" "$ctx"
