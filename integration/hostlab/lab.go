package hostlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Lab network: the bridge in the Admin host holds AdminIP; hosts get the
// next addresses in the order they are added. The range is private to the
// lab's namespaces (nothing routes it anywhere else).
var (
	labPrefix = netip.MustParsePrefix("192.168.77.0/24")
	// AdminIP is the Admin host's address on the lab bridge.
	AdminIP = netip.MustParseAddr("192.168.77.1")
)

// ServiceCIDR is routed on every host's lab interface. A real machine's
// default route carries Service IPs until the proxy's DNAT rewrites them
// (connect() needs a route first); the lab's hosts have no default route,
// so this route stands in for it: unrewritten packets reach the lab bridge
// and die there.
const ServiceCIDR = "10.96.0.0/12"

// Options configure a lab.
type Options struct {
	// Dir holds the lab's state: one folder per host (its /var/lib) and
	// the logs. Close removes it when the lab made it (Dir empty).
	Dir string
	// Logf, when set, reports each step (t.Logf, or a printer in a demo).
	Logf func(format string, args ...any)
}

// Lab is a set of hosts on one bridge. Its ID is unique per run and is part
// of every name the lab leaves outside its namespaces (cgroups).
type Lab struct {
	ID    string
	Dir   string
	Admin *Host

	logf    func(string, ...any)
	ownDir  bool
	mu      sync.Mutex
	hosts   []*Host
	nextIP  netip.Addr
	closed  bool
	holders []*exec.Cmd
	// closing is when Close began, in clock ticks since boot (as
	// /proc/PID/stat's start time): a process started later is not the
	// lab's, even in a namespace whose number the kernel reused.
	closing uint64
}

// Host is one machine of the lab.
type Host struct {
	Name string
	// IP is the host's address on the lab bridge (eth0).
	IP netip.Addr
	// Dir is the host's folder on the machine; its /var/lib is Dir/var/lib.
	Dir string

	lab    *Lab
	holder *exec.Cmd
	// ns are the host's namespaces ("net:[4026532301]", …), to find any
	// process left in one after Close.
	ns    []string
	mu    sync.Mutex
	procs []*Proc
}

// VarLib is where the host's /var/lib is on the machine.
func (h *Host) VarLib() string { return filepath.Join(h.Dir, "var", "lib") }

// Path is the machine's path of a path inside the host's /var/lib (other
// paths are the machine's own).
func (h *Host) Path(p string) string {
	if rest, ok := strings.CutPrefix(p, "/var/lib/"); ok && h != h.lab.Admin {
		return filepath.Join(h.VarLib(), rest)
	}
	return p
}

// CgroupRoot is a cgroup parent unique to this host in this run: agents
// of the lab put their pods below it, so Close can find and remove them.
func (h *Host) CgroupRoot(agent string) string {
	return "/" + h.lab.cgroupName() + "/" + h.Name + "-" + agent
}

// Facilities are the programs a lab needs; Check reports the first missing.
var Facilities = []string{"nsenter", "ip", "nft", "curl", "busybox"}

// Check says why a lab cannot run here (not root, a program missing), or
// nil. Tests skip with its message.
func Check() error {
	if os.Geteuid() != 0 {
		return errors.New("hostlab needs root (network, mount and PID namespaces)")
	}
	for _, p := range Facilities {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("hostlab needs %s: %w", p, err)
		}
	}
	return nil
}

// New makes a lab: the Admin host holding the lab bridge (lab0, AdminIP).
func New(opts Options) (*Lab, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	sweepStale(opts.Logf)
	suffix := make([]byte, 3)
	if _, err := rand.Read(suffix); err != nil {
		return nil, err
	}
	l := &Lab{ID: fmt.Sprintf("%d-%s", os.Getpid(), hex.EncodeToString(suffix)), Dir: opts.Dir, logf: opts.Logf,
		nextIP: AdminIP.Next().Next().Next().Next().Next().Next().Next().Next().Next().Next()} // .11
	if l.logf == nil {
		l.logf = func(string, ...any) {}
	}
	if l.Dir == "" {
		l.Dir, l.ownDir = filepath.Join(os.TempDir(), "skiff-hostlab-"+l.ID), true
		if err := os.Mkdir(l.Dir, 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(l.Dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	admin, err := l.newHost("admin", AdminIP, false)
	if err != nil {
		l.Close()
		return nil, err
	}
	l.Admin = admin
	prefix := fmt.Sprintf("%s/%d", AdminIP, labPrefix.Bits())
	for _, argv := range [][]string{
		{"ip", "link", "set", "lo", "up"},
		{"ip", "link", "add", "lab0", "type", "bridge"},
		{"ip", "addr", "add", prefix, "dev", "lab0"},
		{"ip", "link", "set", "lab0", "up"},
	} {
		if _, err := l.Exec(admin, argv...); err != nil {
			l.Close()
			return nil, err
		}
	}
	l.logf("lab %s: bridge lab0 %s in its own network namespace (no uplink, no default route)", l.ID, prefix)
	return l, nil
}

// AddHost makes a host with the next lab address, hostname name, and an
// empty /var/lib of its own.
func (l *Lab) AddHost(name string) (*Host, error) {
	l.mu.Lock()
	ip := l.nextIP
	l.nextIP = ip.Next()
	l.mu.Unlock()
	h, err := l.newHost(name, ip, true)
	if err != nil {
		return nil, err
	}
	veth := "v-" + name
	if len(veth) > 15 {
		return nil, fmt.Errorf("host name %q: at most 13 characters (it names the host's veth on the bridge)", name)
	}
	// The pair is made in the Admin host's namespace and one end moved into
	// the new host; the PID is the holder's as the machine sees it, so the
	// command enters only the Admin host's network namespace.
	steps := []struct {
		host *Host
		argv []string
		net  bool
	}{
		{l.Admin, []string{"ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", fmt.Sprint(h.holder.Process.Pid)}, true},
		{l.Admin, []string{"ip", "link", "set", veth, "master", "lab0", "up"}, false},
		{h, []string{"ip", "link", "set", "lo", "up"}, false},
		{h, []string{"ip", "addr", "add", fmt.Sprintf("%s/%d", ip, labPrefix.Bits()), "dev", "eth0"}, false},
		{h, []string{"ip", "link", "set", "eth0", "up"}, false},
		{h, []string{"ip", "route", "add", ServiceCIDR, "dev", "eth0"}, false},
		{h, []string{"sysctl", "-qw", "net.ipv4.ip_forward=1"}, false},
	}
	for _, s := range steps {
		var err error
		if s.net {
			_, err = l.run(context.Background(), nsenterNet(s.host), s.argv...)
		} else {
			_, err = l.Exec(s.host, s.argv...)
		}
		if err != nil {
			return nil, fmt.Errorf("host %s: %w", name, err)
		}
	}
	// A fresh link can drop the first packets for a moment: the host is
	// handed out once it reaches the Admin host.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := l.Exec(h, "busybox", "ping", "-c", "1", "-W", "1", AdminIP.String())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("host %s does not reach the admin host over the lab bridge: %w", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.logf("host %s: %s on lab0, own network, mount, UTS, IPC and PID namespaces", name, ip)
	return h, nil
}

func (l *Lab) newHost(name string, ip netip.Addr, ownVarLib bool) (*Host, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errors.New("lab closed")
	}
	h := &Host{Name: name, IP: ip, Dir: filepath.Join(l.Dir, name), lab: l}
	varLib := ""
	if ownVarLib {
		varLib = h.VarLib()
		if err := os.MkdirAll(varLib, 0o755); err != nil {
			return nil, err
		}
	}
	cmd, err := startHolder(name, varLib, filepath.Join(l.Dir, "logs", name+"-holder.log"))
	if err != nil {
		return nil, err
	}
	h.holder = cmd
	for _, kind := range []string{"net", "mnt", "pid", "uts"} {
		if id, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", cmd.Process.Pid, kind)); err == nil {
			h.ns = append(h.ns, id)
		}
	}
	l.holders = append(l.holders, cmd)
	l.hosts = append(l.hosts, h)
	return h, nil
}

// Hosts lists the lab's hosts (not Admin) in the order they were added.
func (l *Lab) Hosts() []*Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	var hs []*Host
	for _, h := range l.hosts {
		if h != l.Admin {
			hs = append(hs, h)
		}
	}
	return hs
}

// AddAddress gives h one more lab address (for a second node on the
// machine) and returns it.
func (l *Lab) AddAddress(h *Host) (netip.Addr, error) {
	l.mu.Lock()
	ip := l.nextIP
	l.nextIP = ip.Next()
	l.mu.Unlock()
	_, err := l.Exec(h, "ip", "addr", "add", fmt.Sprintf("%s/%d", ip, labPrefix.Bits()), "dev", "eth0")
	return ip, err
}

// nsenter enters every namespace of h: the command is a process of that
// machine (nsenter forks it into h's PID namespace).
func nsenter(h *Host) []string {
	return []string{"nsenter", "-t", fmt.Sprint(h.holder.Process.Pid), "-m", "-u", "-n", "-i", "-p", "--"}
}

// nsenterNet enters only h's network namespace.
func nsenterNet(h *Host) []string {
	return []string{"nsenter", "-t", fmt.Sprint(h.holder.Process.Pid), "-n", "--"}
}

// ExecError is a command in a host that failed.
type ExecError struct {
	Host, Cmd      string
	Stdout, Stderr string
	Err            error
}

func (e *ExecError) Error() string {
	return fmt.Sprintf("on %s: %s: %v: %s", e.Host, e.Cmd, e.Err, strings.TrimSpace(e.Stderr+" "+e.Stdout))
}
func (e *ExecError) Unwrap() error { return e.Err }

// Exec runs argv in h and returns its stdout; it fails after 60 s.
func (l *Lab) Exec(h *Host, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return l.ExecContext(ctx, h, argv...)
}

// ExecContext runs argv in h until ctx ends.
func (l *Lab) ExecContext(ctx context.Context, h *Host, argv ...string) (string, error) {
	return l.run(ctx, nsenter(h), argv...)
}

func (l *Lab) run(ctx context.Context, prefix []string, argv ...string) (string, error) {
	full := append(append([]string{}, prefix...), argv...)
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		host := "?"
		if len(prefix) > 2 {
			host = l.hostByPid(prefix[2])
		}
		return out.String(), &ExecError{Host: host, Cmd: strings.Join(argv, " "), Stdout: out.String(), Stderr: errb.String(), Err: err}
	}
	return out.String(), nil
}

func (l *Lab) hostByPid(pid string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range l.hosts {
		if fmt.Sprint(h.holder.Process.Pid) == pid {
			return h.Name
		}
	}
	return "?"
}

// Partition cuts a and b apart (both ways, every protocol) with an
// nftables drop in each one's network namespace; the rest of the lab
// still reaches both. Heal undoes it.
func (l *Lab) Partition(a, b *Host) error {
	for _, p := range [][2]*Host{{a, b}, {b, a}} {
		if err := l.ensureCutTable(p[0]); err != nil {
			return err
		}
		if _, err := l.Exec(p[0], "nft", "add", "element", "inet", "hostlab", "cut", "{", p[1].IP.String(), "}"); err != nil {
			return err
		}
	}
	l.logf("partition: %s and %s cut apart", a.Name, b.Name)
	return nil
}

// Heal ends a Partition of a and b.
func (l *Lab) Heal(a, b *Host) error {
	for _, p := range [][2]*Host{{a, b}, {b, a}} {
		if _, err := l.Exec(p[0], "nft", "delete", "element", "inet", "hostlab", "cut", "{", p[1].IP.String(), "}"); err != nil {
			return err
		}
	}
	l.logf("partition of %s and %s healed", a.Name, b.Name)
	return nil
}

// ensureCutTable makes the host's table of cut peers (idempotent: nft add
// of an existing table, set or chain changes nothing).
func (l *Lab) ensureCutTable(h *Host) error {
	rules := `add table inet hostlab
add set inet hostlab cut { type ipv4_addr; }
add chain inet hostlab in { type filter hook input priority -300; policy accept; }
add chain inet hostlab out { type filter hook output priority -300; policy accept; }
flush chain inet hostlab in
flush chain inet hostlab out
add rule inet hostlab in ip saddr @cut drop
add rule inet hostlab out ip daddr @cut drop
`
	f := filepath.Join(h.Dir, "hostlab-cut.nft")
	if err := os.MkdirAll(h.Dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(f, []byte(rules), 0o644); err != nil {
		return err
	}
	_, err := l.Exec(h, "nft", "-f", f)
	return err
}

// Close ends every process of the lab (daemons first, then each host with
// its holder, which takes the host's containers, mounts and network with
// it), removes the run's cgroups and, when the lab made it, its directory.
// It returns what it could not remove (see Leftovers).
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.closing = ticksSinceBoot()
	hosts := append([]*Host(nil), l.hosts...)
	l.mu.Unlock()
	for _, h := range hosts {
		for _, p := range h.Procs() {
			p.Kill()
		}
	}
	for _, h := range hosts {
		if h.holder != nil && h.holder.Process != nil {
			_ = h.holder.Process.Kill()
			_ = h.holder.Wait()
		}
	}
	l.removeCgroups(10 * time.Second)
	if l.ownDir {
		// The hosts' mounts went with their mount namespaces.
		_ = os.RemoveAll(l.Dir)
	}
	if left := l.Leftovers(); len(left) > 0 {
		return fmt.Errorf("lab %s left: %s", l.ID, strings.Join(left, "; "))
	}
	return nil
}

func (l *Lab) cgroupName() string { return "skiff-lab-" + l.ID }

// cgroupDirs lists the run's cgroup folders in every hierarchy, deepest
// first.
func (l *Lab) cgroupDirs() []string {
	tops, _ := filepath.Glob("/sys/fs/cgroup/*/" + l.cgroupName())
	if top := "/sys/fs/cgroup/" + l.cgroupName(); isDir(top) {
		tops = append(tops, top) // a unified (v2-only) hierarchy
	}
	var dirs []string
	for _, top := range tops {
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	sort.Slice(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
	return dirs
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// removeCgroups kills whatever is still in the run's cgroups (nothing
// should be: the hosts' PID namespaces are gone) and removes them.
func (l *Lab) removeCgroups(within time.Duration) {
	deadline := time.Now().Add(within)
	for {
		dirs := l.cgroupDirs()
		if len(dirs) == 0 || time.Now().After(deadline) {
			return
		}
		for _, d := range dirs {
			if b, err := os.ReadFile(filepath.Join(d, "cgroup.procs")); err == nil {
				for _, f := range strings.Fields(string(b)) {
					var pid int
					if _, err := fmt.Sscan(f, &pid); err == nil && pid > 0 {
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			}
			_ = os.Remove(d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Leftovers lists what of the lab is still on the machine: processes (the
// holders, any process in a namespace of a host, anything with the lab's
// directory on its command line), cgroups,
// mounts under the lab's directory, and the directory itself if the lab
// made it. Empty after a clean Close.
func (l *Lab) Leftovers() []string {
	var left []string
	for _, c := range l.holders {
		if c.Process != nil && syscall.Kill(c.Process.Pid, 0) == nil && c.ProcessState == nil {
			left = append(left, fmt.Sprintf("holder process %d", c.Process.Pid))
		}
	}
	ours := map[string]string{}
	l.mu.Lock()
	for _, h := range l.hosts {
		for _, id := range h.ns {
			ours[id] = h.Name
		}
	}
	l.mu.Unlock()
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		cmdline, _ := os.ReadFile(p + "/cmdline")
		show := strings.ReplaceAll(string(bytes.TrimRight(cmdline, "\x00")), "\x00", " ")
		if bytes.Contains(cmdline, []byte(l.Dir)) {
			left = append(left, fmt.Sprintf("process %s: %s", filepath.Base(p), show))
			continue
		}
		if l.closing != 0 && startTicks(p) > l.closing+1 { // +1: the two clocks round apart
			// Another test's process (a container, say) in a namespace
			// that got the number of one of ours after ours was gone.
			continue
		}
		for _, kind := range []string{"net", "mnt", "pid"} {
			id, err := os.Readlink(p + "/ns/" + kind)
			if host, ok := ours[id]; err == nil && ok {
				left = append(left, fmt.Sprintf("process %s in %s's %s namespace: %s", filepath.Base(p), host, kind, show))
				break
			}
		}
	}
	for _, d := range l.cgroupDirs() {
		left = append(left, "cgroup "+d)
	}
	if m, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(m), "\n") {
			if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], l.Dir) {
				left = append(left, "mount "+f[4])
			}
		}
	}
	if l.ownDir {
		if _, err := os.Stat(l.Dir); err == nil {
			left = append(left, "directory "+l.Dir)
		}
	}
	return left
}

// logTail is the last n lines of a file, for failure reports.
func logTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// sweepStale removes what labs of processes that no longer exist left (a
// run killed before its Close): their empty cgroups and their directories.
// A lab's names carry its process ID, so a live lab is never touched.
func sweepStale(logf func(string, ...any)) {
	stale := func(name string) bool {
		rest, ok := strings.CutPrefix(name, "skiff-lab-")
		if !ok {
			rest, ok = strings.CutPrefix(name, "skiff-hostlab-")
		}
		pid, _, _ := strings.Cut(rest, "-")
		var n int
		if _, err := fmt.Sscan(pid, &n); !ok || err != nil || n <= 0 {
			return false
		}
		return syscall.Kill(n, 0) == syscall.ESRCH
	}
	tops, _ := filepath.Glob("/sys/fs/cgroup/*/skiff-lab-*")
	more, _ := filepath.Glob("/sys/fs/cgroup/skiff-lab-*")
	for _, top := range append(tops, more...) {
		if !stale(filepath.Base(top)) {
			continue
		}
		var dirs []string
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = os.Remove(dirs[i]) // only empty ones go
		}
		if logf != nil && !isDir(top) {
			logf("removed the cgroups of a stale lab: %s", top)
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "skiff-hostlab-*"))
	for _, d := range dirs {
		if stale(filepath.Base(d)) && !hasMounts(d) {
			_ = os.RemoveAll(d)
		}
	}
}

// hasMounts reports whether anything is mounted below dir in this mount
// namespace (RemoveAll must not descend into it).
func hasMounts(dir string) bool {
	m, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return true
	}
	for _, line := range strings.Split(string(m), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir) {
			return true
		}
	}
	return false
}

// Pid is the host's holder process (PID 1 of the host) as the machine sees
// it: nsenter -t <Pid> enters the host.
func (h *Host) Pid() int { return h.holder.Process.Pid }

// clockTicks is USER_HZ, the unit of /proc/PID/stat's start time: 100 on
// every Linux architecture Go builds for.
const clockTicks = 100

// ticksSinceBoot is now in clock ticks since boot (0: unknown).
func ticksSinceBoot() uint64 {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	secs, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0
	}
	return uint64(secs * clockTicks)
}

// startTicks is when process dir (/proc/PID) started, in clock ticks since
// boot (0: unknown, so it counts as before).
func startTicks(dir string) uint64 {
	b, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: fields count from after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0
	}
	v, err := strconv.ParseUint(f[19], 10, 64) // field 22: starttime
	if err != nil {
		return 0
	}
	return v
}
