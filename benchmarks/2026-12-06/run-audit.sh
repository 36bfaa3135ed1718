#!/usr/bin/env bash
# The audit pass record's cost (issue 20), side by side: the record alone
# (auth BenchmarkPassRecord) and a whole connect through the mochi adapter
# (adapters/mochi BenchmarkConnectAudit), each test binary run 6 times in a
# row with -count 1 so that audit=off/direct/buffered interleave.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=benchmarks/2026-12-06
go test -c -o /tmp/auth.test ./auth
(cd adapters/mochi && go test -c -o /tmp/mochi.test .)
: >"$out/audit-record.txt"
[ "${1:-}" = record ] || : >"$out/audit-connect.txt"
for i in 1 2 3 4 5 6; do
	(cd auth && /tmp/auth.test -test.run '^$' -test.bench PassRecord -test.benchmem -test.benchtime 100000x -test.count 1) | grep -E '^Benchmark' >>"$out/audit-record.txt"
	[ "${1:-}" = record ] || (cd adapters/mochi && /tmp/mochi.test -test.run '^$' -test.bench ConnectAudit -test.benchmem -test.benchtime 2s -test.count 1) | grep -E '^Benchmark' >>"$out/audit-connect.txt"
done
