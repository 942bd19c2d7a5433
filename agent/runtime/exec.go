package runtime

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/containerd/console"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/utils"
	"golang.org/x/sys/unix"

	"github.com/skiffhq/skiff/agent/probe"
)

// WinSize is a terminal size.
type WinSize struct {
	Width, Height uint16
}

// ExecOptions for running a command in a container.
type ExecOptions struct {
	Cmd    []string
	Stdin  io.Reader // nil: /dev/null
	Stdout io.Writer
	Stderr io.Writer // ignored with TTY (the terminal merges both)
	TTY    bool
	// Size is the initial terminal size; Resize carries later changes.
	Size   WinSize
	Resize <-chan WinSize
}

// Exec runs opts.Cmd in a running container with the container's
// environment, working directory and user, and returns its exit code
// (128+signal if killed). Cancelling ctx kills the command.
func (r *Runtime) Exec(ctx context.Context, uid, container string, opts ExecOptions) (int, error) {
	p, err := r.pod(uid)
	if err != nil {
		return -1, err
	}
	return p.exec(ctx, container, opts)
}

func (p *podRT) exec(ctx context.Context, name string, opts ExecOptions) (int, error) {
	if len(opts.Cmd) == 0 {
		return -1, fmt.Errorf("exec: empty command")
	}
	p.mu.Lock()
	c, ok := p.ctrs[name]
	if !ok {
		p.mu.Unlock()
		return -1, fmt.Errorf("%s/%s: %w", p.rec.Pod.UID, name, ErrContainerNotFound)
	}
	lc, ex := c.lc, c.rec.Exec
	p.mu.Unlock()
	if lc == nil {
		return -1, fmt.Errorf("%s/%s: %w", p.rec.Pod.UID, name, ErrNotRunning)
	}
	proc := &libcontainer.Process{Args: opts.Cmd, Env: ex.Env, Cwd: ex.Cwd, UID: ex.UID, GID: ex.GID,
		AdditionalGroups: ex.Groups, Init: false}
	var (
		master    console.Console
		copyDone  = make(chan struct{})
		sockLocal *os.File
	)
	if opts.TTY {
		parent, child, err := utils.NewSockPair("console")
		if err != nil {
			return -1, fmt.Errorf("exec: console socket: %w", err)
		}
		defer parent.Close()
		sockLocal = child
		proc.ConsoleSocket = child
		proc.ConsoleWidth, proc.ConsoleHeight = opts.Size.Width, opts.Size.Height
		if err := lc.Run(proc); err != nil {
			child.Close()
			return -1, fmt.Errorf("exec: %w", err)
		}
		child.Close()
		f, err := utils.RecvFile(parent)
		if err != nil {
			_ = proc.Signal(unix.SIGKILL)
			_, _ = proc.Wait()
			return -1, fmt.Errorf("exec: receive pty: %w", err)
		}
		master, err = console.ConsoleFromFile(f)
		if err != nil {
			f.Close()
			_ = proc.Signal(unix.SIGKILL)
			_, _ = proc.Wait()
			return -1, fmt.Errorf("exec: pty: %w", err)
		}
		defer master.Close()
		if opts.Stdin != nil {
			go func() { _, _ = io.Copy(master, opts.Stdin) }()
		}
		go func() {
			defer close(copyDone)
			if opts.Stdout != nil {
				_, _ = io.Copy(opts.Stdout, master)
			} else {
				_, _ = io.Copy(io.Discard, master)
			}
		}()
		if opts.Resize != nil {
			// Deferred after master.Close, so it runs first: the pty is not
			// closed under a Resize in flight (copyDone is closed by then on
			// every return path below).
			resizeDone := make(chan struct{})
			defer func() { <-resizeDone }()
			go func() {
				defer close(resizeDone)
				for {
					select {
					case ws, ok := <-opts.Resize:
						if !ok {
							return
						}
						_ = master.Resize(console.WinSize{Width: ws.Width, Height: ws.Height})
					case <-copyDone:
						return
					}
				}
			}()
		}
	} else {
		close(copyDone)
		proc.Stdout, proc.Stderr = opts.Stdout, opts.Stderr
		if opts.Stdin != nil {
			// The command gets a pipe of ours, not the reader: exec.Cmd
			// waits for its own stdin copy to end, and a caller's stdin
			// left open would keep Wait from returning after the command
			// exited. The copy here ends when opts.Stdin does (the
			// caller closes it after Exec returns).
			r, w, err := os.Pipe()
			if err != nil {
				return -1, fmt.Errorf("exec: stdin pipe: %w", err)
			}
			proc.Stdin = r
			defer w.Close()
			go func() {
				_, _ = io.Copy(w, opts.Stdin)
				w.Close()
			}()
			defer r.Close()
		}
		if err := lc.Run(proc); err != nil {
			return -1, fmt.Errorf("exec: %w", err)
		}
	}
	_ = sockLocal
	waitDone := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			_ = proc.Signal(unix.SIGKILL)
		case <-waitDone:
		}
	}()
	ps, err := proc.Wait()
	close(waitDone)
	if opts.TTY {
		<-copyDone // the pty reports EOF/EIO once the last writer exits
	}
	if ps == nil {
		return -1, fmt.Errorf("exec: wait: %w", err)
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), ctx.Err()
	}
	return ps.ExitCode(), nil
}

// probeTarget adapts a container to agent/probe.
type probeTarget struct {
	p    *podRT
	name string
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (p *podRT) probeTarget(c *ctrRT) probe.Target {
	return probeTarget{p: p, name: c.spec.Name, dial: probe.NetnsDialer(p.rec.Sandbox.Netns)}
}

func (t probeTarget) Exec(ctx context.Context, cmd []string) (int, []byte, error) {
	var out bytes.Buffer
	code, err := t.p.exec(ctx, t.name, ExecOptions{Cmd: cmd, Stdout: &out, Stderr: &out})
	return code, out.Bytes(), err
}

func (t probeTarget) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return t.dial(ctx, network, addr)
}

func (t probeTarget) Host() string {
	if t.p.rec.Sandbox.IP != "" {
		return t.p.rec.Sandbox.IP
	}
	return "127.0.0.1"
}

// Logs writes a container's log to w (see LogOptions).
func (r *Runtime) Logs(ctx context.Context, uid, container string, opts LogOptions, w io.Writer) error {
	p, err := r.pod(uid)
	if err != nil {
		return err
	}
	p.mu.Lock()
	c, ok := p.ctrs[container]
	p.mu.Unlock()
	if !ok {
		return fmt.Errorf("%s/%s: %w", uid, container, ErrContainerNotFound)
	}
	running := func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		// Restarting counts as running: more output is coming.
		return !p.rec.Stopped && c.rec.Final == nil && p.ctx.Err() == nil
	}
	if opts.Previous {
		prev := previousLogPath(p.logPath(container))
		if _, err := os.Stat(prev); err != nil {
			return fmt.Errorf("%s/%s: %w", uid, container, ErrNoPreviousInstance)
		}
		opts.Follow = false
		return readLog(ctx, prev, r.cfg.LogMaxFiles, opts, w, running)
	}
	return readLog(ctx, p.logPath(container), r.cfg.LogMaxFiles, opts, w, running)
}
