#!/bin/sh
# Builds the example gateway and broker as static binaries into DIR (the
# first argument), with the flags of the container image (Containerfile
# runs this script; the test examples/e2e/cluster TestImageBinariesStatic
# runs it too and checks the result has no dynamic section). Reproducible:
# no cgo, no file paths, no build ID, no VCS stamp, the module graph of
# examples/go.mod and go.sum only (GOWORK=off); two builds, one with an
# empty GOCACHE, gave byte-identical binaries with the same Go toolchain.
set -eu
out="${1:?usage: build-static.sh OUTDIR}"
cd "$(dirname "$0")/../examples"
export CGO_ENABLED=0 GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false -trimpath"
go build -ldflags="-s -w -buildid=" -o "$out/" ./gateway ./broker
