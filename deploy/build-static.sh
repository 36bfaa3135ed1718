#!/bin/sh
# Builds the example gateway and broker (or the programs named after DIR)
# as static binaries into DIR (the first argument), with the flags of the container image (build-image.sh
# runs this script for deploy/Containerfile; the test examples/e2e/cluster
# TestImageBinariesStatic runs it too and checks the result has no dynamic
# section). Reproducible: no cgo, no file paths, no build ID, no VCS stamp
# (-buildvcs=false; a Go binary holds no build time), the modules of this
# tree tied by go.work (the nested modules require each other at the
# release version, which go.work replaces with the folders: a build of a
# tagged release can use GOWORK=off instead); two builds, one with an
# empty GOCACHE, gave byte-identical binaries with the same Go toolchain.
set -eu
out="${1:?usage: build-static.sh OUTDIR [gateway|broker...]}"
shift
[ $# -gt 0 ] || set -- gateway broker
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/examples"
export CGO_ENABLED=0 GOWORK="$root/go.work" GOFLAGS="-buildvcs=false -trimpath"
for p in "$@"; do
	case "$p" in
	gateway | broker) ;;
	*)
		echo "build-static.sh: $p: gateway or broker" >&2
		exit 2
		;;
	esac
	set -- "$@" "./$p"
	shift
done
go build -ldflags="-s -w -buildid=" -o "$out/" "$@"
