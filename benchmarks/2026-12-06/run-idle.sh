#!/usr/bin/env bash
# Memory per idle client on the gateway (issue 23, item 5), before and
# after the series that reduced it, and the QoS 1 publish hot path side by
# side. "before" is a commit (default 6fbd2be: BenchmarkIdleClient added,
# gateway code as on main then; after a merge, main's parent without the
# series) into which this tree's gateway/idle_test.go and its race files
# are copied; "after" is the working tree. Usage, from anywhere:
#   benchmarks/2026-12-06/run-idle.sh [rounds [before-commit]]   (default 3 6fbd2be)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=benchmarks/2026-12-06
rounds=${1:-3}
base=${2:-6fbd2be}
before=$(mktemp -d)
trap 'git worktree remove --force "$before"' EXIT
git worktree add -q --detach "$before" "$base"
cp gateway/idle_test.go gateway/race_test.go gateway/norace_test.go "$before/gateway/"
(cd "$before/gateway" && go test -c -o /tmp/gw-idle-before.test .)
(cd gateway && go test -c -o /tmp/gw-idle-after.test .)
: >"$out/idle.txt"
: >"$out/idle-publish.txt"
cd gateway
for i in $(seq "$rounds"); do
	for v in before after; do
		echo "variant: $v" >>"../$out/idle.txt"
		/tmp/gw-idle-$v.test -test.run '^$' -test.bench IdleClient -test.benchtime 1x -test.count 1 |
			grep -E '^Benchmark' >>"../$out/idle.txt"
	done
done
for i in $(seq $((2 * rounds))); do
	for v in before after; do
		echo "variant: $v" >>"../$out/idle-publish.txt"
		/tmp/gw-idle-$v.test -test.run '^$' -test.bench 'Publish/qos=1/through=gateway$' -test.benchmem -test.benchtime 2s -test.count 1 |
			grep -E '^Benchmark' >>"../$out/idle-publish.txt"
	done
done
cd ..
go run golang.org/x/perf/cmd/benchstat@latest -col variant "$out/idle.txt"
go run golang.org/x/perf/cmd/benchstat@latest -col variant "$out/idle-publish.txt"
