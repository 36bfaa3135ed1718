// Package logsink is the log output of the example programs: a buffered
// writer that the handlers of log/slog share, flushed at most every
// interval, on a full buffer and on Close.
//
// Why: a slog handler writes each record with one Write. Straight to a
// file or a pipe that is one write system call per record, which costs
// more than formatting the record; on a loaded machine the audit log's
// pass record then took about 10 % of a connect's cost. Buffered, a record
// costs a copy under a lock, and the writes are few and large: the
// adapters/mochi benchmark BenchmarkConnectAudit measures the difference
// (BENCHMARKS.md). The price is that a crash loses at most the last
// interval's records; Close (deferred by the programs) flushes the rest.
//
//	out := logsink.New(os.Stdout, logsink.DefaultInterval)
//	defer out.Close()
//	log := slog.New(slog.NewTextHandler(out, nil))
package logsink
