package hostlab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a daemon in a host, logging to Log. nsenter forks it into the
// host's PID namespace; Pid is the daemon itself as the machine sees it.
type Proc struct {
	Name string
	Host *Host
	Argv []string
	Log  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	pid  int
	done chan struct{}
	runs int
}

// Start runs argv in h as a daemon named name (unique per host), logging
// stdout and stderr to a file of the lab.
func (l *Lab) Start(h *Host, name string, argv ...string) (*Proc, error) {
	p := &Proc{Name: name, Host: h, Argv: argv}
	if err := p.start(); err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.procs = append(h.procs, p)
	h.mu.Unlock()
	l.logf("%s$ %s", h.Name, strings.Join(argv, " "))
	return p, nil
}

func (p *Proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.runs++
	suffix := ""
	if p.runs > 1 {
		suffix = fmt.Sprintf(".%d", p.runs)
	}
	p.Log = filepath.Join(p.Host.lab.Dir, "logs", p.Host.Name+"-"+p.Name+suffix+".log")
	f, err := os.Create(p.Log)
	if err != nil {
		return err
	}
	defer f.Close()
	full := append(nsenter(p.Host), p.Argv...)
	cmd := exec.Command(full[0], full[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own session: a Ctrl-C of a demo reaches only the demo, which
	// stops the daemons in order. The daemon dies with its host anyway.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s on %s: %w", p.Name, p.Host.Name, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		_ = cmd.Wait() // the state is read from cmd after done closes
		close(done)
	}(p.done)
	// nsenter forks the daemon; find it among nsenter's children.
	deadline := time.Now().Add(5 * time.Second)
	for p.pid = 0; p.pid == 0 && time.Now().Before(deadline); {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
		if f := strings.Fields(string(b)); len(f) > 0 {
			p.pid, _ = strconv.Atoi(f[0])
			break
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s on %s exited at once: %s", p.Name, p.Host.Name, logTail(p.Log, 20))
		case <-time.After(5 * time.Millisecond):
		}
	}
	if p.pid == 0 {
		return fmt.Errorf("%s on %s: nsenter started no process", p.Name, p.Host.Name)
	}
	return nil
}

// Pid is the daemon's process ID in the machine's PID namespace.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

// Exited reports whether the daemon has ended.
func (p *Proc) Exited() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// Output is the daemon's log so far.
func (p *Proc) Output() string {
	b, _ := os.ReadFile(p.Log)
	return string(b)
}

// Tail is the last n lines of the daemon's log.
func (p *Proc) Tail(n int) string { return logTail(p.Log, n) }

// Kill is a crash: SIGKILL to the daemon, nothing else of the host.
func (p *Proc) Kill() {
	p.mu.Lock()
	pid, done := p.pid, p.done
	p.mu.Unlock()
	if pid == 0 || done == nil {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill() // nsenter, if the daemon is stuck in the kernel
		<-done
	}
}

// Stop asks the daemon to end (SIGTERM) and kills it after timeout.
func (p *Proc) Stop(timeout time.Duration) error {
	p.mu.Lock()
	pid, done := p.pid, p.done
	p.mu.Unlock()
	if pid == 0 {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("%s on %s did not stop within %s of SIGTERM; killed", p.Name, p.Host.Name, timeout)
	}
}

// Restart starts the daemon again with the same command line (after Kill
// or Stop); its log continues in a new file (Log).
func (p *Proc) Restart() error {
	if !p.Exited() {
		return fmt.Errorf("%s on %s is still running", p.Name, p.Host.Name)
	}
	if err := p.start(); err != nil {
		return err
	}
	p.Host.lab.logf("%s$ %s   (again)", p.Host.Name, strings.Join(p.Argv, " "))
	return nil
}

// Procs lists the daemons started in h.
func (h *Host) Procs() []*Proc {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*Proc(nil), h.procs...)
}

// Kill crashes every daemon of h (kill -9), as a crash of the node's
// processes; the host itself (its network, its containers) stays up.
func (l *Lab) Kill(h *Host) {
	for _, p := range h.Procs() {
		p.Kill()
	}
	l.logf("%s: kill -9 of its daemons", h.Name)
}

// Restart starts every daemon of h that is not running again.
func (l *Lab) Restart(h *Host) error {
	for _, p := range h.Procs() {
		if p.Exited() {
			if err := p.Restart(); err != nil {
				return err
			}
		}
	}
	return nil
}
