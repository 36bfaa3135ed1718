#!/usr/bin/env bash
# The NATS adapter's benchmarks (issue 22, item 4), one sequential run.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=benchmarks/2026-12-06-nats
uptime > "$out/load-before.txt"
(cd adapters/nats && go test -run '^$' -bench 'Connect' -benchmem -benchtime 300x -count 8 .) > "$out/connect.txt" 2>&1
(cd adapters/nats && go test -run '^$' -bench 'Permissions' -benchmem -benchtime 5000x -count 8 .) > "$out/permissions.txt" 2>&1
go test -run '^$' -bench 'Grants' -benchmem -benchtime 5000x -count 8 ./abac/ > "$out/abac-grants.txt" 2>&1
uptime > "$out/load-after.txt"
