package cli

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/pflag"
)

// logFlags are every daemon's logging flags (ctl init, join, recover,
// agent): the same format and keys (proto/logkey) from all of them.
type logFlags struct {
	level, format string
}

func (f *logFlags) add(fl *pflag.FlagSet) {
	fl.StringVar(&f.level, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&f.format, "log-format", "text", "text (key=value) or json (one object per line); the keys are the same: time, level, msg, node, namespace, pod, kind, name, request_id, err")
}

// logger is the daemon's logger on w.
func (f logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.level)); err != nil {
		return nil, fmt.Errorf("--log-level %s: want debug, info, warn or error", f.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch f.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", f.format)
}
