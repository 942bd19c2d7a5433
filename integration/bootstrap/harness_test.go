package bootstrap_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/testutil"
)

// ctlBin is the ctl binary built once for the package's tests.
var ctlBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "skiff-bootstrap-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctlBin = filepath.Join(dir, "ctl")
	build := exec.Command("go", "build", "-o", ctlBin, "github.com/skiffhq/skiff/cmd/ctl")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build ctl:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a long-running ctl process (a node).
type proc struct {
	name     string
	cmd      *exec.Cmd
	out, err *testutil.SyncBuffer
	done     chan struct{}
	waitErr  error
}

func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &testutil.SyncBuffer{}, err: &testutil.SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(ctlBin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.err
	// The node dies with the test binary even if cleanup never runs.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("--- %s (%s) stdout:\n%s\n--- stderr (tail):\n%s", name, strings.Join(args, " "), p.out.String(), tail(p.err.String(), 40))
		}
	})
	return p
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill is a crash: SIGKILL, no clean-up by the node.
func (p *proc) kill() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop asks the node to shut down cleanly.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Errorf("%s did not stop within 20s of SIGTERM; killing it", p.name)
		p.kill()
	}
}

// waitOutput waits until the process printed re on stdout and returns the match.
func (p *proc) waitOutput(t *testing.T, timeout time.Duration, re *regexp.Regexp) []string {
	t.Helper()
	var m []string
	testutil.WaitFor(t, timeout, fmt.Sprintf("%s to print %q", p.name, re), func() bool {
		if p.exited() {
			t.Fatalf("%s exited (%v) before printing %q; stderr:\n%s", p.name, p.waitErr, re, tail(p.err.String(), 30))
		}
		m = re.FindStringSubmatch(p.out.String())
		return m != nil
	})
	return m
}

// run runs a one-shot ctl command and returns its output and exit code.
func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ctlBin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("ctl %s: %v", strings.Join(args, " "), err)
	}
	return o.String(), e.String(), 0
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, code := run(t, args...)
	if code != 0 {
		t.Fatalf("ctl %s: exit %d: %s%s", strings.Join(args, " "), code, errs, out)
	}
	return out
}

// mustFail runs a command that must fail with an "error: …" line
// containing want, and returns that line.
func mustFail(t *testing.T, want string, args ...string) string {
	t.Helper()
	out, errs, code := run(t, args...)
	if code == 0 {
		t.Fatalf("ctl %s succeeded, want an error containing %q; stdout:\n%s", strings.Join(args, " "), want, out)
	}
	// apply -f reports each object on its own error line, then a summary
	// line: any of them may carry the refusal.
	var line string
	for _, l := range strings.Split(errs, "\n") {
		if strings.HasPrefix(l, "error: ") && strings.Contains(l, want) {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("ctl %s: want an error line containing %q, stderr:\n%s", strings.Join(args, " "), want, tail(errs, 10))
	}
	return line
}

func freePort(t *testing.T) int { return testutil.FreePort(t) }

// node is one control or worker node run by ctl.
type node struct {
	// owner is the test that owns the process: the whole cluster's test,
	// so that a subtest ending does not stop the nodes it started.
	owner   *testing.T
	name    string
	dataDir string
	apiPort int
	args    []string
	p       *proc
}

func (n *node) api() string { return "127.0.0.1:" + strconv.Itoa(n.apiPort) }

// start (re)starts the node with the exact same command line.
func (n *node) start() {
	n.p = startProc(n.owner, n.name, n.args...)
}

func (n *node) running() bool { return n.p != nil && !n.p.exited() }

// cluster is a set of nodes made with ctl init and ctl join.
type cluster struct {
	t       *testing.T
	dir     string
	nodes   []*node
	workers []*node
	admin   string // admin client config
}

var (
	reControlJoin = regexp.MustCompile(`ctl join --control --token (\S+) (\S+)`)
	reWorkerJoin  = regexp.MustCompile(`ctl join --token (\S+) (\S+)`)
)

func (c *cluster) controlArgs(t *testing.T, name string) (*node, []string) {
	n := &node{owner: c.t, name: name, dataDir: filepath.Join(c.dir, name), apiPort: freePort(t)}
	// --gossip=false: every node here is on 127.0.0.1, and gossip takes
	// the same port on every host (the multi-host test covers gossip).
	return n, []string{"--gossip=false", "--data-dir", n.dataDir, "--name", name, "--advertise", "127.0.0.1", "--bind-address", "127.0.0.1",
		"--api-port", strconv.Itoa(n.apiPort), "--raft-port", strconv.Itoa(freePort(t))}
}

// newCluster runs `ctl init` and returns the cluster with the two join
// tokens it printed.
func newCluster(t *testing.T, first string) (c *cluster, controlToken, workerToken string) {
	t.Helper()
	c = &cluster{t: t, dir: t.TempDir()}
	n, args := c.controlArgs(t, first)
	n.args = append([]string{"init"}, args...)
	n.start()
	c.nodes = append(c.nodes, n)
	m := n.p.waitOutput(t, 60*time.Second, reControlJoin)
	if m[2] != n.api() {
		t.Fatalf("init printed join address %s, want %s", m[2], n.api())
	}
	w := n.p.waitOutput(t, 5*time.Second, reWorkerJoin)
	c.admin = filepath.Join(n.dataDir, "admin.conf")
	return c, m[1], w[1]
}

// joinControl starts `ctl join --control` for a new node.
func (c *cluster) joinControl(t *testing.T, name, token string) *node {
	t.Helper()
	n, args := c.controlArgs(t, name)
	n.args = append(append([]string{"join", "--control", "--token", token}, args...), c.anyAPI())
	n.start()
	n.p.waitOutput(t, 60*time.Second, regexp.MustCompile(`control node `+name+` serving`))
	c.nodes = append(c.nodes, n)
	return n
}

// joinWorker starts `ctl join` of a worker and waits for its Node object.
func (c *cluster) joinWorker(t *testing.T, name, token string) *node {
	t.Helper()
	n := &node{owner: c.t, name: name, dataDir: filepath.Join(c.dir, name)}
	// --agent=false: these tests are about the certificate and the Node
	// object, not pods (the agent needs root).
	n.args = []string{"join", "--agent=false", "--gossip=false", "--token", token, "--data-dir", n.dataDir, "--name", name, "--advertise", "127.0.0.1", c.anyAPI()}
	n.start()
	n.p.waitOutput(t, 60*time.Second, regexp.MustCompile(`worker node `+name+` registered`))
	c.workers = append(c.workers, n)
	return n
}

// anyAPI is the API address of a running control node.
func (c *cluster) anyAPI() string {
	for _, n := range c.nodes {
		if n.running() {
			return n.api()
		}
	}
	return c.nodes[0].api()
}

// servers lists the API addresses of the running control nodes.
func (c *cluster) servers() string {
	var s []string
	for _, n := range c.nodes {
		if n.running() {
			s = append(s, n.api())
		}
	}
	return strings.Join(s, ",")
}

// ctl runs a command as admin against the running control nodes.
func (c *cluster) ctl(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return run(t, append([]string{"--config", c.admin, "--server", c.servers()}, args...)...)
}

func (c *cluster) mustCtl(t *testing.T, args ...string) string {
	t.Helper()
	return mustRun(t, append([]string{"--config", c.admin, "--server", c.servers()}, args...)...)
}

// eventuallyCtl retries a command until it succeeds (elections, catch-up).
func (c *cluster) eventuallyCtl(t *testing.T, timeout time.Duration, args ...string) string {
	t.Helper()
	var out, errs string
	ok := testutil.Eventually(timeout, func() bool {
		var code int
		out, errs, code = c.ctl(t, args...)
		return code == 0
	})
	if !ok {
		t.Fatalf("ctl %s kept failing for %s: %s", strings.Join(args, " "), timeout, errs)
	}
	return out
}

// member is one row of `ctl members`.
type member struct {
	id, api, store, role, leader, healthy string
}

func (c *cluster) members(t *testing.T) map[string]member {
	t.Helper()
	out, _, code := c.ctl(t, "members")
	if code != 0 {
		return nil
	}
	ms := map[string]member{}
	for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) != 6 {
			continue
		}
		ms[f[0]] = member{id: f[0], api: f[1], store: f[2], role: f[3], leader: f[4], healthy: f[5]}
	}
	return ms
}

// waitMembers waits until `ctl members` shows exactly want (id → role)
// with every member healthy and its API address registered.
func (c *cluster) waitMembers(t *testing.T, timeout time.Duration, want map[string]string) map[string]member {
	t.Helper()
	var got map[string]member
	ok := testutil.Eventually(timeout, func() bool {
		got = c.members(t)
		if len(got) != len(want) {
			return false
		}
		for id, role := range want {
			m, ok := got[id]
			if !ok || m.role != role || m.healthy != "yes" || m.api == "-" {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("members: want %v all healthy, have %v", want, got)
	}
	return got
}

func (c *cluster) leader(t *testing.T) *node {
	t.Helper()
	var lead *node
	testutil.WaitFor(t, 30*time.Second, "a leader in `ctl members`", func() bool {
		for id, m := range c.members(t) {
			if m.leader == "yes" {
				for _, n := range c.nodes {
					if n.name == id && n.running() {
						lead = n
						return true
					}
				}
			}
		}
		return false
	})
	return lead
}
