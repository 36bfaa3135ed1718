#!/usr/bin/env bash
set -x
cd /work/main
uptime
go test -run '^$' -bench 'Chain|Connect|AuthorizeHotPath' -benchmem -count 6 ./auth/ > /tmp/bench/core.txt 2>&1
go test -run '^$' -bench IdleSessions -benchtime 1x -count 3 ./auth/ > /tmp/bench/idle.txt 2>&1
go test -run '^$' -bench 'BenchmarkAuthorize' -benchtime 0.5s -count 5 ./abac/ > /tmp/bench/abac.txt 2>&1
go test -c -o /tmp/bench/x509auth.test ./x509auth
(cd x509auth && for i in 1 2 3 4 5 6; do /tmp/bench/x509auth.test -test.run '^$' -test.bench . -test.benchmem -test.benchtime 1s -test.count 1; done) > /tmp/bench/x509.txt 2>&1
(cd adapters/mochi && go test -c -o /tmp/bench/mochi.test . && for i in 1 2 3 4 5 6; do /tmp/bench/mochi.test -test.run '^$' -test.bench 'ConnectMTLS|PublishQoS0|OnACLCheck' -test.benchmem -test.benchtime 2s -test.count 1; done) > /tmp/bench/mochi.txt 2>&1
go test -run '^$' -bench . -benchmem -benchtime 2s ./customauth/ > /tmp/bench/custom.txt 2>&1
go test -run '^$' -bench . -benchmem -count 6 ./scramauth/ > /tmp/bench/scram.txt 2>&1
go test -run '^$' -bench . -benchmem -benchtime 2s -count 3 ./satauth/ > /tmp/bench/sat.txt 2>&1
uptime
echo DONE
