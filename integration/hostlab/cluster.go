package hostlab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// Build builds ctl and the demo registry (integration/demo/registry) into
// dir and returns their paths. It runs go build in the current directory,
// which must be inside the module.
func Build(ctx context.Context, dir string) (ctl, registry string, err error) {
	if ctl, err = BuildCtl(ctx, dir); err != nil {
		return "", "", err
	}
	registry, err = BuildRegistry(ctx, dir)
	return ctl, registry, err
}

// BuildCtl builds ctl into dir.
func BuildCtl(ctx context.Context, dir string) (string, error) {
	return build(ctx, filepath.Join(dir, "ctl"), "github.com/skiffhq/skiff/cmd/ctl")
}

// BuildRegistry builds the demo registry into dir.
func BuildRegistry(ctx context.Context, dir string) (string, error) {
	return build(ctx, filepath.Join(dir, "registry"), "github.com/skiffhq/skiff/integration/demo/registry")
}

// build runs go build in its own process group, all of which ctx's end
// kills (the compiler and linker too, not only the go command).
func build(ctx context.Context, out, pkg string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}

// WaitLog waits until the daemon's log matches re and returns the match;
// it fails when the daemon exits first or timeout passes.
func (p *Proc) WaitLog(re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindStringSubmatch(p.Output()); m != nil {
			return m, nil
		}
		if p.Exited() {
			return nil, fmt.Errorf("%s on %s exited before printing %q:\n%s", p.Name, p.Host.Name, re, p.Tail(30))
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s on %s did not print %q within %s:\n%s", p.Name, p.Host.Name, re, timeout, p.Tail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// RegistryPort is where StartRegistry serves, on AdminIP.
const RegistryPort = 5000

// StartRegistry runs the demo registry (built by Build) on the Admin host
// and returns its address; it serves the demo image skiff/hello:1.
func (l *Lab) StartRegistry(bin string) (string, error) {
	addr := fmt.Sprintf("%s:%d", AdminIP, RegistryPort)
	p, err := l.Start(l.Admin, "registry", bin, "-addr", addr)
	if err != nil {
		return "", err
	}
	if _, err := p.WaitLog(regexp.MustCompile(`serving`), 60*time.Second); err != nil {
		return "", err
	}
	return addr, nil
}

// Cluster is a Skiff cluster on lab hosts, made with the same ctl commands
// an administrator types on each machine.
type Cluster struct {
	Lab *Lab
	// Bin is the ctl binary (the same path on every host).
	Bin string
	// Registry is the image registry the workers may pull from over HTTP.
	Registry string
	// ClusterCIDR is the pod network (ctl init's default).
	ClusterCIDR string

	Controls, Workers []*Host
	// Node is the ctl process of each node, by host name.
	Node map[string]*Proc
	// Admin is admin.conf (written by ctl init on the first control host).
	Admin string
	// API is the first control node's API address, which joins use.
	API                       string
	ControlToken, WorkerToken string
}

var (
	reControlJoin = regexp.MustCompile(`ctl join --control --token (\S+) (\S+)`)
	reWorkerJoin  = regexp.MustCompile(`ctl join --token (\S+) (\S+)`)
)

// InitCommand is what runs on the first control host: ctl init with gossip
// (every node of the cluster is a gossip member).
func (c *Cluster) InitCommand() []string { return []string{c.Bin, "init", "--gossip"} }

// ControlJoinCommand is what runs on each further control host.
func (c *Cluster) ControlJoinCommand() []string {
	return []string{c.Bin, "join", "--control", "--gossip", "--token", c.ControlToken, c.API}
}

// WorkerJoinCommand is what runs on a worker host h: one process joins,
// holds the certificate and runs the agent with the VXLAN pod network.
// The cgroup parent is the lab's (all hosts share one kernel), the
// registry the lab's; extra flags follow.
func (c *Cluster) WorkerJoinCommand(h *Host, agent string, extra ...string) []string {
	argv := []string{c.Bin, "join", "--gossip", "--pod-network", "vxlan", "--cluster-cidr", c.ClusterCIDR,
		"--insecure-registry", c.Registry, "--cgroup-root", h.CgroupRoot(agent)}
	argv = append(argv, extra...)
	return append(argv, "--token", c.WorkerToken, c.API)
}

// NewCluster makes hosts c1…cN (control) and w1…wM (workers) and runs ctl
// init on c1, ctl join --control on the other control hosts and ctl join
// on the workers, waiting for each to serve (control) or register
// (workers).
func NewCluster(l *Lab, ctl, registry string, controls, workers int) (*Cluster, error) {
	c := &Cluster{Lab: l, Bin: ctl, Registry: registry, ClusterCIDR: "10.244.0.0/16", Node: map[string]*Proc{}}
	c1, err := l.AddHost("c1")
	if err != nil {
		return nil, err
	}
	c.Controls = append(c.Controls, c1)
	p, err := l.Start(c1, "ctl", c.InitCommand()...)
	if err != nil {
		return nil, err
	}
	c.Node[c1.Name] = p
	m, err := p.WaitLog(reControlJoin, 90*time.Second)
	if err != nil {
		return nil, err
	}
	c.ControlToken, c.API = m[1], m[2]
	w, err := p.WaitLog(reWorkerJoin, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c.WorkerToken = w[1]
	c.Admin = c1.Path("/var/lib/skiff/admin.conf")
	for i := 2; i <= controls; i++ {
		if _, err := c.AddControl(fmt.Sprintf("c%d", i)); err != nil {
			return nil, err
		}
	}
	for i := 1; i <= workers; i++ {
		if _, err := c.AddWorker(fmt.Sprintf("w%d", i)); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// AddControl makes a host and joins it as a control node.
func (c *Cluster) AddControl(name string) (*Host, error) {
	h, err := c.Lab.AddHost(name)
	if err != nil {
		return nil, err
	}
	p, err := c.Lab.Start(h, "ctl", c.ControlJoinCommand()...)
	if err != nil {
		return nil, err
	}
	c.Node[name] = p
	c.Controls = append(c.Controls, h)
	if _, err := p.WaitLog(regexp.MustCompile(`control node `+name+` serving`), 90*time.Second); err != nil {
		return nil, err
	}
	return h, nil
}

// AddWorker makes a host and joins it as a worker running its agent.
func (c *Cluster) AddWorker(name string, extra ...string) (*Host, error) {
	h, err := c.Lab.AddHost(name)
	if err != nil {
		return nil, err
	}
	p, err := c.Lab.Start(h, "ctl", c.WorkerJoinCommand(h, "agent", extra...)...)
	if err != nil {
		return nil, err
	}
	c.Node[name] = p
	c.Workers = append(c.Workers, h)
	if _, err := p.WaitLog(regexp.MustCompile(`worker node `+name+` registered`), 90*time.Second); err != nil {
		return nil, err
	}
	return h, nil
}

// Ctl runs ctl as the administrator, on the Admin host (the lab's own
// machine on the bridge), and returns its stdout.
func (c *Cluster) Ctl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return c.Lab.ExecContext(ctx, c.Lab.Admin, append([]string{c.Bin, "--config", c.Admin}, args...)...)
}

// Apply runs ctl apply -f with the given manifest text.
func (c *Cluster) Apply(manifest string) (string, error) {
	f, err := os.CreateTemp(c.Lab.Dir, "manifest-*.yaml")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(manifest); err != nil {
		f.Close()
		return "", err
	}
	f.Close()
	return c.Ctl("apply", "-f", f.Name())
}

// Curl runs curl in h (in a pod's network namespace when netns is set,
// see PodNetns) with a 5 s limit and returns the body.
func (c *Cluster) Curl(h *Host, netns, url string) (string, error) {
	out, err := c.Lab.ExecInNetns(h, netns, "curl", "-sS", "--fail", "-m", "5", url)
	return strings.TrimSpace(out), err
}

// ExecInNetns runs argv in h, inside the network namespace netns (a path
// as h sees it, such as a pod's from PodNetns; "" for h's own): traffic
// it sends leaves from that namespace's addresses.
func (l *Lab) ExecInNetns(h *Host, netns string, argv ...string) (string, error) {
	if netns != "" {
		argv = append([]string{"nsenter", "--net=" + netns, "--"}, argv...)
	}
	return l.Exec(h, argv...)
}
