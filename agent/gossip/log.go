package gossip

import (
	"bytes"
	"context"
	"log"
	"log/slog"
)

// newStdLogger adapts memberlist's "[LEVEL] memberlist: ..." lines to
// slog at the matching level.
func newStdLogger(l *slog.Logger) *log.Logger {
	return log.New(levelWriter{l}, "", 0)
}

type levelWriter struct{ l *slog.Logger }

var levels = []struct {
	prefix []byte
	level  slog.Level
}{
	{[]byte("[DEBUG] "), slog.LevelDebug},
	{[]byte("[INFO] "), slog.LevelInfo},
	{[]byte("[WARN] "), slog.LevelWarn},
	{[]byte("[ERR] "), slog.LevelError},
}

func (w levelWriter) Write(p []byte) (int, error) {
	msg, level := bytes.TrimRight(p, "\n"), slog.LevelInfo
	for _, lv := range levels {
		if bytes.HasPrefix(msg, lv.prefix) {
			msg, level = msg[len(lv.prefix):], lv.level
			break
		}
	}
	w.l.Log(context.Background(), level, string(msg))
	return len(p), nil
}
