package runtime

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Container output goes: container stdout/stderr → a FIFO per stream (the
// container holds it read-write, so it never gets SIGPIPE while the agent
// restarts; writes just block once the pipe is full) → a pump in the
// runtime → one CRI-format log file per container ("<RFC3339Nano> <stream>
// <F|P> <text>"), rotated by size into <file>.1 … <file>.N.

const maxLogLine = 16 << 10 // longer lines are split into P(artial) records

// logFile is a size-rotated CRI log file shared by a container's two pumps.
type logFile struct {
	path     string
	maxBytes int64
	maxFiles int

	mu   sync.Mutex
	f    *os.File
	size int64
}

func openLogFile(path string, maxBytes int64, maxFiles int) (*logFile, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &logFile{path: path, maxBytes: maxBytes, maxFiles: maxFiles, f: f, size: st.Size()}, nil
}

func (l *logFile) write(stream string, partial bool, msg []byte, now time.Time) error {
	tag := "F"
	if partial {
		tag = "P"
	}
	var b bytes.Buffer
	b.Grow(len(msg) + 48)
	b.WriteString(now.UTC().Format(time.RFC3339Nano))
	b.WriteByte(' ')
	b.WriteString(stream)
	b.WriteByte(' ')
	b.WriteString(tag)
	b.WriteByte(' ')
	b.Write(msg)
	b.WriteByte('\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return os.ErrClosed
	}
	if l.maxBytes > 0 && l.size > 0 && l.size+int64(b.Len()) > l.maxBytes {
		if err := l.rotate(); err != nil {
			return err
		}
	}
	n, err := l.f.Write(b.Bytes())
	l.size += int64(n)
	return err
}

// rotate shifts path.N-1 → path.N … path → path.1 and starts a new file.
func (l *logFile) rotate() error {
	l.f.Close()
	keep := l.maxFiles - 1
	if keep < 1 {
		keep = 1
	}
	_ = os.Remove(l.path + "." + strconv.Itoa(keep))
	for i := keep - 1; i >= 1; i-- {
		_ = os.Rename(l.path+"."+strconv.Itoa(i), l.path+"."+strconv.Itoa(i+1))
	}
	if err := os.Rename(l.path, l.path+".1"); err != nil {
		return fmt.Errorf("rotate log: %w", err)
	}
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		l.f = nil
		return fmt.Errorf("rotate log: %w", err)
	}
	l.f, l.size = f, 0
	return nil
}

// newInstance keeps the log written so far as the previous instance's
// (<path>.prev, with its rotated files as <path>.prev.N) and starts an
// empty one: a container restarted, and `logs --previous` reads what the
// one before wrote.
func (l *logFile) newInstance() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return os.ErrClosed
	}
	l.f.Close()
	prev := previousLogPath(l.path)
	_ = os.Remove(prev)
	for i := 1; i <= l.maxFiles; i++ {
		_ = os.Remove(prev + "." + strconv.Itoa(i))
		_ = os.Rename(l.path+"."+strconv.Itoa(i), prev+"."+strconv.Itoa(i))
	}
	if err := os.Rename(l.path, prev); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("keep previous log: %w", err)
	}
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		l.f = nil
		return fmt.Errorf("new log: %w", err)
	}
	l.f, l.size = f, 0
	return nil
}

func previousLogPath(path string) string { return path + ".prev" }

func (l *logFile) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// containerLog is the stdio plumbing of one container of a pod.
type containerLog struct {
	dir  string // holds the FIFOs
	name string
	file *logFile

	readers []*os.File
	wg      sync.WaitGroup

	subMu sync.Mutex
	subs  map[*subscriber]struct{}
}

func (cl *containerLog) fifo(stream string) string {
	return filepath.Join(cl.dir, cl.name+"."+stream)
}

// startPumps opens the FIFOs (creating them) for reading and copies them into
// the log file until stopPumps.
func (cl *containerLog) startPumps() error {
	if err := os.MkdirAll(cl.dir, 0o700); err != nil {
		return err
	}
	for _, stream := range []string{"stdout", "stderr"} {
		p := cl.fifo(stream)
		if err := unix.Mkfifo(p, 0o600); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("mkfifo %s: %w", p, err)
		}
		// Read-write: the open does not block, and the pump never sees EOF
		// between container restarts.
		r, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("open fifo %s: %w", p, err)
		}
		cl.readers = append(cl.readers, r)
		cl.wg.Add(1)
		go func() {
			defer cl.wg.Done()
			cl.pump(r, stream)
		}()
	}
	return nil
}

// stdio opens the container's ends of the FIFOs; the caller closes them once
// the container has inherited them.
func (cl *containerLog) stdio() (stdout, stderr *os.File, err error) {
	stdout, err = os.OpenFile(cl.fifo("stdout"), os.O_RDWR, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("stdout fifo: %w", err)
	}
	stderr, err = os.OpenFile(cl.fifo("stderr"), os.O_RDWR, 0)
	if err != nil {
		stdout.Close()
		return nil, nil, fmt.Errorf("stderr fifo: %w", err)
	}
	return stdout, stderr, nil
}

// stopPumps drains what is already in the pipes, then stops.
func (cl *containerLog) stopPumps() {
	for _, r := range cl.readers {
		_ = r.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	}
	cl.wg.Wait()
	for _, r := range cl.readers {
		r.Close()
	}
	cl.readers = nil
	cl.file.close()
}

// pump copies one output stream of the container into the log file as it
// comes, and hands each chunk to the attached callers (attach.go) at once,
// not line by line: a prompt without a newline reaches them.
func (cl *containerLog) pump(r io.Reader, stream string) {
	ll := lineLog{stream: stream, lf: cl.file}
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			cl.broadcast(stream, buf[:n])
			if werr := ll.write(buf[:n], time.Now()); werr != nil && errors.Is(werr, os.ErrClosed) {
				return
			}
		}
		if err != nil {
			_ = ll.flush(time.Now()) // deadline at stop, or closed
			return
		}
	}
}

// lineLog splits a stream into log records: one F record per line, P
// records for pieces of a line longer than maxLogLine, and what is left
// without a newline at the end.
type lineLog struct {
	stream  string
	lf      *logFile
	pending []byte
}

func (l *lineLog) write(p []byte, now time.Time) error {
	for len(p) > 0 {
		chunk, complete := p, false
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			chunk, p, complete = p[:i], p[i+1:], true
		} else {
			p = nil
		}
		l.pending = append(l.pending, chunk...)
		for len(l.pending) >= maxLogLine {
			if err := l.lf.write(l.stream, true, l.pending[:maxLogLine], now); err != nil {
				return err
			}
			l.pending = append(l.pending[:0], l.pending[maxLogLine:]...)
		}
		if complete {
			err := l.lf.write(l.stream, false, l.pending, now)
			l.pending = l.pending[:0]
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func (l *lineLog) flush(now time.Time) error {
	if len(l.pending) == 0 {
		return nil
	}
	err := l.lf.write(l.stream, true, l.pending, now)
	l.pending = l.pending[:0]
	return err
}

// LogOptions for reading a container's log.
type LogOptions struct {
	// Follow keeps streaming new lines until ctx ends or the container is
	// no longer running and everything was read.
	Follow bool
	// TailLines > 0 starts that many lines before the end; 0 means all.
	TailLines int
	// Timestamps prefixes each line with its RFC3339Nano time.
	Timestamps bool
	// Stream "stdout" or "stderr" limits output to one stream; "" is both.
	Stream string
	// SinceTime, when set, skips lines written before it.
	SinceTime time.Time
	// Previous reads the container's previous instance (the one before
	// its last restart) instead of the current one; never followed.
	Previous bool
}

// logRecord is one line of a CRI log file, its fields aliasing the line.
type logRecord struct {
	ts      []byte
	stream  []byte
	partial bool
	msg     []byte
}

// parseRecord splits "<ts> <stream> <F|P> <msg>" without copying.
func parseRecord(line []byte) (logRecord, bool) {
	i := bytes.IndexByte(line, ' ')
	if i < 0 {
		return logRecord{}, false
	}
	r := logRecord{ts: line[:i]}
	rest := line[i+1:]
	j := bytes.IndexByte(rest, ' ')
	if j < 0 {
		return logRecord{}, false
	}
	r.stream, rest = rest[:j], rest[j+1:]
	tag := rest
	if k := bytes.IndexByte(rest, ' '); k >= 0 {
		tag, r.msg = rest[:k], rest[k+1:]
	}
	r.partial = len(tag) == 1 && tag[0] == 'P'
	return r, true
}

var newline = []byte{'\n'}

func (o LogOptions) emit(w io.Writer, r logRecord) error {
	if o.Stream != "" && string(r.stream) != o.Stream {
		return nil
	}
	if !o.SinceTime.IsZero() {
		if ts, err := time.Parse(time.RFC3339Nano, string(r.ts)); err == nil && ts.Before(o.SinceTime) {
			return nil
		}
	}
	if o.Timestamps {
		if _, err := w.Write(r.ts); err != nil {
			return err
		}
		if _, err := w.Write([]byte{' '}); err != nil {
			return err
		}
	}
	if _, err := w.Write(r.msg); err != nil {
		return err
	}
	if !r.partial {
		_, err := w.Write(newline)
		return err
	}
	return nil
}

// logLines reads a log file's complete lines as they come, in place (a
// line is valid until the next read), keeping an incomplete last line for
// the next call.
type logLines struct {
	f       *os.File
	br      *bufio.Reader
	pending []byte
}

func openLogLines(path string) (*logLines, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return &logLines{f: f, br: bufio.NewReaderSize(f, 64<<10)}, nil
}

func (l *logLines) close() { l.f.Close() }

// each calls fn with every complete line now in the file (without its
// newline) and returns at its current end.
func (l *logLines) each(fn func(line []byte) error) error {
	for {
		line, err := l.br.ReadSlice('\n')
		switch {
		case err == nil:
			if len(l.pending) > 0 {
				line = append(l.pending, line...)
				l.pending = l.pending[:0]
			}
			if ferr := fn(line[:len(line)-1]); ferr != nil {
				return ferr
			}
		case errors.Is(err, bufio.ErrBufferFull):
			l.pending = append(l.pending, line...)
		default: // EOF: an incomplete last line waits for the rest
			l.pending = append(l.pending, line...)
			return nil
		}
	}
}

// tailRing keeps copies of the last n lines.
type tailRing struct {
	lines [][]byte
	next  int
	full  bool
}

func (t *tailRing) add(line []byte) {
	if t.full {
		t.lines[t.next] = append(t.lines[t.next][:0], line...)
	} else {
		t.lines = append(t.lines, append([]byte(nil), line...))
	}
	t.next++
	if t.next == cap(t.lines) || (t.full && t.next == len(t.lines)) {
		t.next, t.full = 0, true
	}
}

func (t *tailRing) each(fn func([]byte) error) error {
	if !t.full {
		for _, l := range t.lines {
			if err := fn(l); err != nil {
				return err
			}
		}
		return nil
	}
	for i := range t.lines {
		if err := fn(t.lines[(t.next+i)%len(t.lines)]); err != nil {
			return err
		}
	}
	return nil
}

// readLog writes the log at path (with its rotated files) to w, line by
// line as it reads (nothing but the tail's lines is held), then follows.
func readLog(ctx context.Context, path string, maxFiles int, o LogOptions, w io.Writer, running func() bool) error {
	emit := func(line []byte) error {
		if r, ok := parseRecord(line); ok {
			return o.emit(w, r)
		}
		return nil
	}
	var ring *tailRing
	collect := emit
	if o.TailLines > 0 {
		ring = &tailRing{lines: make([][]byte, 0, o.TailLines)}
		collect = func(line []byte) error { ring.add(line); return nil }
	}
	for i := maxFiles; i >= 1; i-- {
		old, err := openLogLines(path + "." + strconv.Itoa(i))
		if err != nil {
			continue // not there, or rotated away while reading
		}
		err = old.each(collect)
		old.close()
		if err != nil {
			return err
		}
	}
	cur, err := openLogLines(path)
	if err != nil {
		return fmt.Errorf("log %s: %w", path, err)
	}
	defer func() { cur.close() }()
	if err := cur.each(collect); err != nil {
		return err
	}
	if ring != nil {
		if err := ring.each(emit); err != nil {
			return err
		}
	}
	flush := func() error {
		if f, ok := w.(interface{ Flush() error }); ok {
			return f.Flush() // caught up: what a buffered writer holds goes out now
		}
		return nil
	}
	if err := flush(); err != nil || !o.Follow {
		return err
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		wasRunning := running()
		if err := cur.each(emit); err != nil {
			return err
		}
		// Rotated (or a new instance started): finish the old file, then
		// switch to the new one.
		if st, err := os.Stat(path); err == nil {
			if old, err2 := cur.f.Stat(); err2 == nil && !os.SameFile(st, old) {
				if err := cur.each(emit); err != nil {
					return err
				}
				if next, err := openLogLines(path); err == nil {
					cur.close()
					cur = next
					if err := cur.each(emit); err != nil {
						return err
					}
				}
			}
		}
		if err := flush(); err != nil {
			return err
		}
		if !wasRunning {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
