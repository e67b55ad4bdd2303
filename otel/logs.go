package saferetryotel

import (
	"context"
	"fmt"
	"log/slog"
)

// redactingHandler passes records on to inner with every URL quoted in
// the message or in a string value redacted (see redactor.message).
type redactingHandler struct {
	inner slog.Handler
	r     *redactor
}

var _ slog.Handler = (*redactingHandler)(nil)

// Enabled implements slog.Handler.
func (h *redactingHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

// Handle implements slog.Handler.
func (h *redactingHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, h.r.message(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.inner.Handle(ctx, out)
}

// WithAttrs implements slog.Handler.
func (h *redactingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		clean[i] = h.attr(a)
	}
	return &redactingHandler{inner: h.inner.WithAttrs(clean), r: h.r}
}

// WithGroup implements slog.Handler.
func (h *redactingHandler) WithGroup(name string) slog.Handler {
	return &redactingHandler{inner: h.inner.WithGroup(name), r: h.r}
}

// attr redacts a's string values, in groups too.
func (h *redactingHandler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, h.r.message(v.String()))
	case slog.KindGroup:
		group := v.Group()
		clean := make([]any, len(group))
		for i, g := range group {
			clean[i] = h.attr(g)
		}
		return slog.Group(a.Key, clean...)
	case slog.KindAny:
		// An error or a Stringer (a *url.URL): what a handler would
		// print is its text.
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, h.r.message(x.Error()))
		case fmt.Stringer:
			return slog.String(a.Key, h.r.message(x.String()))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
