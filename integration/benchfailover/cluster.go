package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/skiffhq/skiff/integration/testutil"
)

// lockedBuffer collects a process's output while others read it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// node is one control node: a ctl process and the command line that
// (re)starts it from its data dir.
type node struct {
	name    string
	dataDir string
	apiAddr string
	args    []string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	exitAt  time.Time
	out     *lockedBuffer // stdout of every run
	log     *lockedBuffer // stderr (slog) of every run
	started int
}

func (n *node) start(ctl string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.out == nil {
		n.out, n.log = &lockedBuffer{}, &lockedBuffer{}
	}
	cmd := exec.Command(ctl, n.args...)
	cmd.Stdout, cmd.Stderr = n.out, n.log
	// The node dies with the bench even if it is interrupted.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", n.name, err)
	}
	done := make(chan struct{})
	n.cmd, n.done = cmd, done
	n.started++
	go func() {
		_ = cmd.Wait()
		n.mu.Lock()
		n.exitAt = time.Now()
		n.mu.Unlock()
		close(done)
	}()
	return nil
}

// signal sends sig and returns when it was sent.
func (n *node) signal(sig syscall.Signal) (time.Time, error) {
	n.mu.Lock()
	cmd := n.cmd
	n.mu.Unlock()
	at := time.Now()
	return at, cmd.Process.Signal(sig)
}

// waitExit waits for the process to end and returns when it did.
func (n *node) waitExit(timeout time.Duration) (time.Time, error) {
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	select {
	case <-done:
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.exitAt, nil
	case <-time.After(timeout):
		return time.Time{}, fmt.Errorf("%s did not exit within %s", n.name, timeout)
	}
}

func (n *node) running() bool {
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

func (n *node) stopHard() {
	if n.running() {
		_, _ = n.signal(syscall.SIGKILL)
		_, _ = n.waitExit(10 * time.Second)
	}
}

// waitOutput waits until the node's stdout matches re.
func (n *node) waitOutput(re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(n.out.String()); m != nil {
			return m, nil
		}
		if !n.running() {
			return nil, fmt.Errorf("%s exited before printing %q:\n%s", n.name, re, tail(n.log.String(), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, fmt.Errorf("%s did not print %q within %s", n.name, re, timeout)
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

func freePort() (int, error) { return testutil.PickPort() }

// cluster is three control nodes made with ctl init and ctl join --control.
type cluster struct {
	ctl   string
	dir   string
	nodes []*node
	admin string
}

var reControlJoin = regexp.MustCompile(`ctl join --control --token (\S+) (\S+)`)

func (c *cluster) newNode(name string, extra []string) (*node, error) {
	api, err := freePort()
	if err != nil {
		return nil, err
	}
	raft, err := freePort()
	if err != nil {
		return nil, err
	}
	n := &node{name: name, dataDir: filepath.Join(c.dir, name), apiAddr: "127.0.0.1:" + strconv.Itoa(api)}
	n.args = append(extra, "--data-dir", n.dataDir, "--name", name, "--advertise", "127.0.0.1", "--bind-address", "127.0.0.1",
		"--api-port", strconv.Itoa(api), "--raft-port", strconv.Itoa(raft), "--log-level", "info",
		// Three control nodes share this host: no gossip (one port per host)
		// and no fixed-port side servers.
		"--gossip=false", "--metrics-port", "-1", "--dashboard-port", "0")
	return n, nil
}

// startCluster runs ctl init and two ctl join --control. extra flags go to
// every node (e.g. --raft-log-store).
func startCluster(ctl, dir string, extra []string) (*cluster, error) {
	c := &cluster{ctl: ctl, dir: dir}
	first, err := c.newNode("n1", append([]string{"init"}, extra...))
	if err != nil {
		return nil, err
	}
	c.nodes = append(c.nodes, first)
	if err := first.start(ctl); err != nil {
		return c, err
	}
	m, err := first.waitOutput(reControlJoin, 60*time.Second)
	if err != nil {
		return c, err
	}
	token := m[1]
	c.admin = filepath.Join(first.dataDir, "admin.conf")
	for _, name := range []string{"n2", "n3"} {
		n, err := c.newNode(name, append([]string{"join", "--control", "--token", token}, extra...))
		if err != nil {
			return c, err
		}
		n.args = append(n.args, first.apiAddr)
		c.nodes = append(c.nodes, n)
		if err := n.start(ctl); err != nil {
			return c, err
		}
		if _, err := n.waitOutput(regexp.MustCompile(`control node `+name+` serving`), 60*time.Second); err != nil {
			return c, err
		}
	}
	return c, nil
}

func (c *cluster) close() {
	for _, n := range c.nodes {
		n.stopHard()
	}
}

func (c *cluster) apiAddrs() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.apiAddr)
	}
	return out
}

func (c *cluster) byName(name string) *node {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// member is one row of `ctl members`.
type member struct{ id, role, leader, healthy string }

// members runs `ctl members` against the running nodes.
func (c *cluster) members(ctx context.Context) (map[string]member, error) {
	var servers []string
	for _, n := range c.nodes {
		if n.running() {
			servers = append(servers, n.apiAddr)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, c.ctl, "--config", c.admin, "--server", strings.Join(servers, ","), "members")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("ctl members: %w: %s", err, strings.TrimSpace(errb.String()))
	}
	ms := map[string]member{}
	for i, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) != 6 {
			continue
		}
		ms[f[0]] = member{id: f[0], role: f[3], leader: f[4], healthy: f[5]}
	}
	return ms, nil
}

// waitHealthy waits until all three nodes are healthy voters with a
// leader, and returns the leader's name.
func (c *cluster) waitHealthy(ctx context.Context, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ms, err := c.members(ctx)
		if err == nil {
			leader, healthy := "", 0
			for _, m := range ms {
				if m.role == "voter" && m.healthy == "yes" {
					healthy++
				}
				if m.leader == "yes" {
					leader = m.id
				}
			}
			if healthy == len(c.nodes) && leader != "" {
				return leader, nil
			}
			err = fmt.Errorf("members: %v", ms)
		}
		last = err
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return "", errors.Join(fmt.Errorf("cluster not healthy within %s", timeout), last)
}

// logEvent is a line a node logged: its time and message.
var reLogLine = regexp.MustCompile(`time=(\S+) level=\S+ msg="([^"]*)"(.*)`)

// firstLogged is when any node other than skip first logged msg after
// since, matching want in the rest of the line (empty: any).
func (c *cluster) firstLogged(skip *node, since time.Time, msg string, want *regexp.Regexp) time.Time {
	var first time.Time
	for _, n := range c.nodes {
		if n == skip || n.log == nil {
			continue
		}
		for _, line := range strings.Split(n.log.String(), "\n") {
			m := reLogLine.FindStringSubmatch(line)
			if m == nil || m[2] != msg || (want != nil && !want.MatchString(m[3])) {
				continue
			}
			at, err := time.Parse(time.RFC3339Nano, m[1])
			if err != nil || !at.After(since) {
				continue
			}
			if first.IsZero() || at.Before(first) {
				first = at
			}
		}
	}
	return first
}
