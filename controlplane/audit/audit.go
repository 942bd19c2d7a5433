package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// Entry is one audit record. Empty optional fields are omitted.
type Entry struct {
	Time time.Time `json:"time"`
	// User is the caller's identity ("admin", "user:bob", "node:w1").
	User string `json:"user"`
	Role string `json:"role,omitempty"`
	// Verb is create, update, patch, delete, deletecollection, apply …
	Verb        string `json:"verb"`
	Kind        string `json:"kind"`
	Subresource string `json:"subresource,omitempty"`
	Namespace   string `json:"namespace,omitempty"`
	Name        string `json:"name,omitempty"`
	// Result is "ok", "denied" or "failed"; empty means derived from Code.
	Result string `json:"result"`
	// Code is the gRPC status code name ("OK", "PermissionDenied").
	Code string `json:"code"`
	// Message is the error returned to the caller, if any.
	Message string `json:"message,omitempty"`
	// ResourceVersion of the object written, if the write succeeded.
	ResourceVersion string `json:"resourceVersion,omitempty"`
	// Container and Command of an exec or attach, Port of a port-forward.
	Container string   `json:"container,omitempty"`
	Command   []string `json:"command,omitempty"`
	Port      int32    `json:"port,omitempty"`
	Remote    string   `json:"remote,omitempty"`
}

// IsMutating reports whether verb changes state (only those are audited).
func IsMutating(verb string) bool {
	switch verb {
	case "get", "list", "watch":
		return false
	}
	return true
}

// ResultOf maps a gRPC code name to a result.
func ResultOf(code string) string {
	switch code {
	case "OK", "":
		return "ok"
	case "PermissionDenied", "Unauthenticated":
		return "denied"
	}
	return "failed"
}

// Config configures a Log.
type Config struct {
	// Dir holds the log files (created 0700); required.
	Dir string
	// FileName of the current file.
	FileName string
	// MaxBytes is the size at which the file is rotated.
	MaxBytes int64
	// MaxBackups is how many rotated files are kept.
	MaxBackups int
	// Now stamps entries without a time; nil means time.Now.
	Now func() time.Time
}

// DefaultConfig: audit.log, rotated at 100 MiB, 5 old files kept. Dir
// must still be set (the data dir).
func DefaultConfig() Config {
	return Config{FileName: "audit.log", MaxBytes: 100 << 20, MaxBackups: 5, Now: time.Now}
}

// Log is an append-only audit log. Safe for concurrent use.
type Log struct {
	cfg  Config
	path string
	mu   sync.Mutex
	f    *os.File
	size int64
}

// Open opens (appending) or creates the log.
func Open(cfg Config) (*Log, error) {
	def := DefaultConfig()
	if cfg.Dir == "" {
		return nil, errors.New("audit: Dir is required")
	}
	if cfg.FileName == "" {
		cfg.FileName = def.FileName
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = def.MaxBytes
	}
	if cfg.MaxBackups < 0 {
		return nil, fmt.Errorf("audit: MaxBackups %d must not be negative", cfg.MaxBackups)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	l := &Log{cfg: cfg, path: filepath.Join(cfg.Dir, cfg.FileName)}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Log) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit: open %s: %w", l.path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit: stat %s: %w", l.path, err)
	}
	l.f, l.size = f, st.Size()
	return nil
}

// Path is the current file.
func (l *Log) Path() string { return l.path }

// Record appends e as one JSON line, rotating first if the line would
// take the file past MaxBytes.
func (l *Log) Record(e Entry) error {
	if e.Time.IsZero() {
		e.Time = l.cfg.Now()
	}
	e.Time = e.Time.UTC()
	if e.Result == "" {
		e.Result = ResultOf(e.Code)
	}
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("audit: encode: %w", err)
	}
	line = append(line, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return errors.New("audit: log is closed")
	}
	if l.size > 0 && l.size+int64(len(line)) > l.cfg.MaxBytes {
		if err := l.rotate(); err != nil {
			return err
		}
	}
	n, err := l.f.Write(line)
	l.size += int64(n)
	if err != nil {
		return fmt.Errorf("audit: write %s: %w", l.path, err)
	}
	return nil
}

// rotate shifts audit.log.i to .i+1 (dropping what falls past MaxBackups)
// and starts a new file.
func (l *Log) rotate() error {
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("audit: sync before rotation: %w", err)
	}
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("audit: close before rotation: %w", err)
	}
	l.f = nil
	if l.cfg.MaxBackups == 0 {
		if err := os.Remove(l.path); err != nil {
			return fmt.Errorf("audit: rotate: %w", err)
		}
		return l.open()
	}
	if err := os.Remove(l.backup(l.cfg.MaxBackups)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("audit: rotate: %w", err)
	}
	for i := l.cfg.MaxBackups - 1; i >= 1; i-- {
		if err := os.Rename(l.backup(i), l.backup(i+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("audit: rotate: %w", err)
		}
	}
	if err := os.Rename(l.path, l.backup(1)); err != nil {
		return fmt.Errorf("audit: rotate: %w", err)
	}
	return l.open()
}

func (l *Log) backup(i int) string { return l.path + "." + strconv.Itoa(i) }

// Close syncs and closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Sync()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}
