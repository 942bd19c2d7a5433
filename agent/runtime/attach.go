package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/console"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/utils"
	"golang.org/x/sys/unix"
)

// Attach to a container's main process, as the CRI's attach does.
//
// Output: the pumps of the container's streams (logs.go) hand every chunk
// to the attached callers as they log it. With tty: true the process has a
// terminal (libcontainer's console socket hands its master to the
// runtime); its output is one stream, logged as stdout, as Kubernetes does.
//
// Stdin (stdin: true), by mode:
//   - stdinOnce: false, no TTY: a FIFO the container holds open read-write,
//     so it never reads EOF and the FIFO outlives the agent: each attach
//     opens it for writing, also after the agent restarted.
//   - stdinOnce: true, no TTY: a pipe whose only writer the runtime holds;
//     the first attach that writes takes it, and closes it when it ends, so
//     the process reads EOF. An agent restart closes it too (the runtime
//     holds the writer): later attaches are refused stdin, saying so.
//   - TTY: the terminal's master, held by the runtime. An agent restart
//     closes it, which hangs up the terminal (the process gets SIGHUP and
//     restarts by its restart policy); a container that kept running
//     refuses stdin, saying its terminal was lost. As with containerd's
//     CRI, stdinOnce does not close a terminal (kubectl's run -it relies
//     on the session ending instead).
//
// A caller's stdin ending ends its attach (the CRI's behaviour), except
// with stdinOnce and no TTY, where the process reads EOF and the attach
// goes on until it exits.

// ErrNoStdin: an attach asked for stdin the container does not have open.
var ErrNoStdin = errors.New("container stdin not open")

// subBacklogBytes is how much of the container's output an attached
// caller may lag behind before it is cut off. It is counted in bytes, not
// chunks: a terminal echoes keystrokes a few bytes at a time, and a burst of
// tiny chunks must not cut off a caller that is only a few KiB behind.
const subBacklogBytes = 4 << 20

// instance is one run of a container's main process, as attach sees it.
type instance struct {
	done chan struct{} // closed once the process exited
	code int32         // the exit code, valid once done

	// reattached: the runtime found this process running after it
	// restarted, so it holds neither its terminal nor a stdinOnce writer.
	reattached bool

	mu      sync.Mutex
	tty     console.Console // the terminal's master; nil without TTY
	ttyDone chan struct{}   // the terminal's pump ended
	ttyGone bool            // the pump closed the master
	stdinW  *os.File        // stdinOnce: the only writer; nil once taken
	taken   bool            // stdinOnce: an attach took stdinW
	ended   bool            // stdinOnce: that attach ended
}

func newInstance(tty console.Console, stdinW *os.File) *instance {
	return &instance{done: make(chan struct{}), tty: tty, stdinW: stdinW}
}

// startTTY pumps the terminal's output into the log and to attached
// callers until the process and its children are gone (the master reads
// EIO), then closes the master.
func (in *instance) startTTY(cl *containerLog) {
	in.ttyDone = make(chan struct{})
	go func() {
		defer close(in.ttyDone)
		ll := lineLog{stream: "stdout", lf: cl.file}
		buf := make([]byte, 32<<10)
		for {
			n, err := in.tty.Read(buf)
			if n > 0 {
				cl.broadcast("stdout", buf[:n])
				_ = ll.write(buf[:n], time.Now()) // a closed log (pod stopping): keep draining the terminal
			}
			if err != nil {
				_ = ll.flush(time.Now())
				break
			}
		}
		in.mu.Lock()
		defer in.mu.Unlock()
		if !in.ttyGone {
			in.ttyGone = true
			_ = in.tty.Close()
		}
	}()
}

// finish records the exit and closes what the runtime held for the process.
func (in *instance) finish(code int32) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.code = code
	close(in.done)
	if in.stdinW != nil {
		_ = in.stdinW.Close()
		in.stdinW = nil
	}
}

// detach closes what the runtime holds for a process it stops supervising
// (Runtime.Close, as the agent exits): its terminal's master (which hangs
// the terminal up) and a stdinOnce writer (the process reads EOF).
func (in *instance) detach() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.tty != nil && !in.ttyGone {
		in.ttyGone = true
		_ = in.tty.Close()
	}
	if in.stdinW != nil {
		_ = in.stdinW.Close()
		in.stdinW = nil
	}
}

// discard closes what a created attempt that never ran holds.
func (in *instance) discard() {
	if in.tty != nil {
		_ = in.tty.Close()
	}
	if in.stdinW != nil {
		_ = in.stdinW.Close()
	}
}

func (in *instance) resize(ws WinSize) {
	if ws.Width == 0 && ws.Height == 0 {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.tty != nil && !in.ttyGone {
		_ = in.tty.Resize(console.WinSize{Width: ws.Width, Height: ws.Height})
	}
}

// subscriber is one attached caller's share of a container's output: what
// it has not taken yet, consecutive chunks of one stream merged.
type subscriber struct {
	mu      sync.Mutex
	pending []outChunk
	bytes   int
	ready   chan struct{} // a token when pending became non-empty
	lost    chan struct{} // closed when it fell behind and was cut off
}

type outChunk struct {
	stream string
	data   []byte
}

// push queues p; false when the backlog passed subBacklogBytes.
func (s *subscriber) push(stream string, p []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bytes+len(p) > subBacklogBytes {
		return false
	}
	if n := len(s.pending); n > 0 && s.pending[n-1].stream == stream {
		s.pending[n-1].data = append(s.pending[n-1].data, p...)
	} else {
		s.pending = append(s.pending, outChunk{stream: stream, data: bytes.Clone(p)})
	}
	s.bytes += len(p)
	select {
	case s.ready <- struct{}{}:
	default:
	}
	return true
}

// take returns everything queued, in order.
func (s *subscriber) take() []outChunk {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.pending
	s.pending, s.bytes = nil, 0
	return out
}

func (cl *containerLog) subscribe() *subscriber {
	s := &subscriber{ready: make(chan struct{}, 1), lost: make(chan struct{})}
	cl.subMu.Lock()
	defer cl.subMu.Unlock()
	if cl.subs == nil {
		cl.subs = map[*subscriber]struct{}{}
	}
	cl.subs[s] = struct{}{}
	return s
}

func (cl *containerLog) unsubscribe(s *subscriber) {
	cl.subMu.Lock()
	defer cl.subMu.Unlock()
	delete(cl.subs, s)
}

// broadcast hands p to every attached caller without waiting for any: one
// that lags subBacklogBytes behind is cut off (its attach ends with an
// error) rather than holding the container's output back.
func (cl *containerLog) broadcast(stream string, p []byte) {
	cl.subMu.Lock()
	defer cl.subMu.Unlock()
	for s := range cl.subs {
		if !s.push(stream, p) {
			delete(cl.subs, s)
			close(s.lost)
		}
	}
}

// settle waits (up to a second) until the pumps have taken everything the
// container wrote into its output FIFOs, so an attach that ends because
// the process exited has all of its output.
func (cl *containerLog) settle() {
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		pending := 0
		for _, r := range cl.readers {
			rc, err := r.SyscallConn()
			if err != nil {
				continue
			}
			_ = rc.Control(func(fd uintptr) {
				if n, err := unix.IoctlGetInt(int(fd), unix.TIOCINQ); err == nil { // FIONREAD
					pending += n
				}
			})
		}
		if pending == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cl.subMu.Lock() // a broadcast under way has finished
	cl.subMu.Unlock()
}

// stdinFIFO opens (creating it) the FIFO a stdin: true, stdinOnce: false
// container reads; flag is the caller's end.
func (cl *containerLog) stdinFIFO(flag int) (*os.File, error) {
	p := cl.fifo("stdin")
	if err := unix.Mkfifo(p, 0o600); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("mkfifo %s: %w", p, err)
	}
	f, err := os.OpenFile(p, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("stdin fifo: %w", err)
	}
	return f, nil
}

// AttachOptions for attaching to a container's main process.
type AttachOptions struct {
	// Stdin, when set, is written to the process's stdin (which the
	// container must keep open: stdin: true). nil attaches output only.
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer // unused with a TTY: the terminal's output is one stream
	// Size is the terminal size to set; Resize carries later changes
	// (both ignored without a TTY).
	Size   WinSize
	Resize <-chan WinSize
}

// AttachResult is how an attach ended.
type AttachResult struct {
	// Exited: the process exited (Code is its exit code); otherwise the
	// caller's stdin ended, which detaches it.
	Exited bool
	Code   int
	// TTY: the container has a terminal (its output came as stdout).
	TTY bool
}

// Attach connects to the main process of a running container: its output
// from now on, and stdin if opts.Stdin is set, until the process exits,
// the caller's stdin ends (see the top of this file) or ctx ends.
func (r *Runtime) Attach(ctx context.Context, uid, name string, opts AttachOptions) (AttachResult, error) {
	p, err := r.pod(uid)
	if err != nil {
		return AttachResult{}, err
	}
	p.mu.Lock()
	c, ok := p.ctrs[name]
	var inst *instance
	if ok && c.lc != nil {
		inst = c.inst
	}
	p.mu.Unlock()
	if !ok {
		return AttachResult{}, fmt.Errorf("%s/%s: %w", uid, name, ErrContainerNotFound)
	}
	if inst == nil {
		return AttachResult{}, fmt.Errorf("%s/%s: %w", uid, name, ErrNotRunning)
	}
	res := AttachResult{TTY: c.spec.TTY}
	var (
		stdin    io.WriteCloser
		onceMode = c.spec.StdinOnce && !c.spec.TTY
	)
	if opts.Stdin != nil {
		if stdin, err = inst.stdinFor(c); err != nil {
			return res, err
		}
		if !onceMode && !c.spec.TTY {
			defer stdin.Close() // this attach's own end of the FIFO
		}
	}
	if onceMode && stdin != nil {
		defer func() {
			_ = stdin.Close() // stdinOnce: the process reads EOF once this attach ends
			inst.mu.Lock()
			inst.ended = true
			inst.mu.Unlock()
		}()
	}
	sub := c.log.subscribe()
	defer c.log.unsubscribe(sub)
	if c.spec.TTY {
		inst.resize(opts.Size)
	}
	var stdinDone chan error
	if stdin != nil {
		stdinDone = make(chan error, 1)
		go func() {
			_, err := io.Copy(stdin, opts.Stdin)
			stdinDone <- err
		}()
	}
	deliver := func() error {
		for _, o := range sub.take() {
			w := opts.Stdout
			if o.stream == "stderr" && !c.spec.TTY {
				w = opts.Stderr
			}
			if w == nil {
				continue
			}
			if _, err := w.Write(o.data); err != nil {
				return err
			}
		}
		return nil
	}
	resize := opts.Resize
	for {
		select {
		case <-sub.ready:
			if err := deliver(); err != nil {
				return res, fmt.Errorf("attach: %w", err)
			}
		case <-sub.lost:
			return res, fmt.Errorf("attach: the caller fell %d MiB behind the container's output and was cut off", subBacklogBytes>>20)
		case ws, ok := <-resize:
			if !ok {
				resize = nil
				continue
			}
			if c.spec.TTY {
				inst.resize(ws)
			}
		case err := <-stdinDone:
			stdinDone = nil
			if onceMode && err == nil {
				_ = stdin.Close() // EOF for the process; its output goes on until it exits
				continue
			}
			if err != nil && ctx.Err() == nil && !errors.Is(err, io.ErrClosedPipe) && !errors.Is(err, syscall.EPIPE) {
				return res, fmt.Errorf("attach: stdin: %w", err)
			}
			return res, nil // the caller's stdin ended: detach
		case <-inst.done:
			if inst.ttyDone != nil {
				select { // the terminal's last output
				case <-inst.ttyDone:
				case <-time.After(2 * time.Second):
				}
			} else {
				c.log.settle()
			}
			if err := deliver(); err != nil {
				return res, fmt.Errorf("attach: %w", err)
			}
			res.Exited, res.Code = true, int(inst.code)
			return res, nil
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
}

// stdinFor is the writer of the process's stdin for one attach.
func (in *instance) stdinFor(c *ctrRT) (io.WriteCloser, error) {
	name := c.spec.Name
	switch {
	case !c.spec.Stdin:
		return nil, fmt.Errorf("%w: container %q does not keep stdin open (its spec has no stdin: true); attach shows its output without -i, or use exec -i", ErrNoStdin, name)
	case c.spec.TTY:
		in.mu.Lock()
		defer in.mu.Unlock()
		if in.tty == nil || in.ttyGone {
			return nil, fmt.Errorf("%w: container %q lost its terminal when this node's agent restarted (the agent holds a container's terminal); restart the container (delete the pod) to attach to its stdin again", ErrNoStdin, name)
		}
		return nopCloser{in.tty}, nil
	case c.spec.StdinOnce:
		in.mu.Lock()
		defer in.mu.Unlock()
		if in.stdinW == nil {
			why := "its first attach ended (stdinOnce: true)"
			switch {
			case in.reattached:
				why = "this node's agent restarted since the container started, and the agent held its stdin (stdinOnce: true)"
			case in.taken && !in.ended:
				why = "its first attach is writing to it (stdinOnce: true: only the first attach does)"
			}
			return nil, fmt.Errorf("%w: stdin of container %q is closed: %s", ErrNoStdin, name, why)
		}
		w := in.stdinW
		in.stdinW, in.taken = nil, true
		return w, nil
	default:
		// The container holds the FIFO open read-write: this open finds a
		// reader and does not block.
		f, err := c.log.stdinFIFO(os.O_WRONLY | syscall.O_NONBLOCK)
		if err != nil {
			return nil, fmt.Errorf("%w: container %q: %w", ErrNoStdin, name, err)
		}
		return f, nil
	}
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// stdio gives a container's main process its stdin, stdout and stderr as
// its spec asks (see the top of this file), runs start (libcontainer's
// Start of proc), and returns what the runtime keeps of them.
func (p *podRT) stdio(c *ctrRT, proc *libcontainer.Process, start func() error) (*instance, error) {
	var (
		parent, child *os.File
		stdinW        *os.File
		err           error
	)
	if c.spec.TTY {
		if parent, child, err = utils.NewSockPair("console"); err != nil {
			return nil, fmt.Errorf("console socket: %w", err)
		}
		defer parent.Close()
		defer child.Close()
		proc.ConsoleSocket = child
	} else {
		stdout, stderr, err := c.log.stdio()
		if err != nil {
			return nil, err
		}
		defer stdout.Close()
		defer stderr.Close()
		proc.Stdout, proc.Stderr = stdout, stderr
		if c.spec.Stdin {
			var r *os.File
			if c.spec.StdinOnce {
				if r, stdinW, err = os.Pipe(); err != nil {
					return nil, fmt.Errorf("stdin pipe: %w", err)
				}
			} else if r, err = c.log.stdinFIFO(os.O_RDWR); err != nil {
				return nil, err
			}
			defer r.Close()
			proc.Stdin = r
		}
	}
	if err := start(); err != nil {
		if stdinW != nil {
			stdinW.Close()
		}
		return nil, err
	}
	if !c.spec.TTY {
		return newInstance(nil, stdinW), nil
	}
	child.Close() // the container has its copy; ours would keep the socket open
	f, err := utils.RecvFile(parent)
	if err != nil {
		return nil, fmt.Errorf("receive the terminal: %w", err)
	}
	master, err := console.ConsoleFromFile(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("terminal: %w", err)
	}
	return newInstance(master, nil), nil
}
