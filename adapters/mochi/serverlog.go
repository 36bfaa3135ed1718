package mochi

import (
	"context"
	"log/slog"
)

// ServerLogger returns a logger for mochi's Options.Logger that writes
// through h without the packets mochi attaches to some records: mochi logs
// the whole decoded packet (attributes "pk" and "packet") when it fails to
// process one, and a CONNECT or AUTH packet that mochi rejects before any
// hook sees it still holds the password or Authentication Data. Records at
// levels h does not enable are dropped as usual.
//
// mochi's own logs are worth keeping: a packet mochi refuses by itself (an
// AUTH with a reason code it does not accept, say) reaches no hook, so its
// "error processing packet" record is the only trace of why a client was
// disconnected.
func ServerLogger(h slog.Handler) *slog.Logger {
	return slog.New(redactHandler{h})
}

// redactHandler drops the packet attributes of mochi's records. Only
// top-level attributes are filtered: mochi adds no groups.
type redactHandler struct{ next slog.Handler }

// redacted says whether an attribute carries a packet.
func redacted(a slog.Attr) bool { return a.Key == "pk" || a.Key == "packet" }

func (r redactHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return r.next.Enabled(ctx, l)
}

func (r redactHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, rec.Message, rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		if !redacted(a) {
			out.AddAttrs(a)
		}
		return true
	})
	return r.next.Handle(ctx, out)
}

func (r redactHandler) WithAttrs(as []slog.Attr) slog.Handler {
	kept := make([]slog.Attr, 0, len(as))
	for _, a := range as {
		if !redacted(a) {
			kept = append(kept, a)
		}
	}
	return redactHandler{r.next.WithAttrs(kept)}
}

func (r redactHandler) WithGroup(name string) slog.Handler {
	return redactHandler{r.next.WithGroup(name)}
}
