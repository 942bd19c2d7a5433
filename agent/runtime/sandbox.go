package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/skiffhq/skiff/agent/network"
)

// sandbox is what a pod's containers share.
type sandbox struct {
	Netns string                `json:"netns"`
	IPC   string                `json:"ipc"`
	UTS   string                `json:"uts"`
	IP    string                `json:"ip,omitempty"`
	Ports []network.PortMapping `json:"ports,omitempty"`
	// Networked: CNI ADD succeeded (so teardown runs DEL).
	Networked bool `json:"networked"`
}

func (p *podRT) hostPorts() []network.PortMapping {
	var pm []network.PortMapping
	for _, c := range p.rec.Pod.Containers {
		for _, pt := range c.Ports {
			if pt.HostPort > 0 {
				pm = append(pm, network.PortMapping{HostPort: pt.HostPort, ContainerPort: pt.ContainerPort, Protocol: strings.ToLower(pt.Protocol), HostIP: pt.HostIP})
			}
		}
	}
	return pm
}

// createSandbox makes the pod's namespaces, wires the network and prepares
// volumes and /etc files.
//
// While CNI wires the network, the containers that run first are created
// up to the point where their init waits to exec the user's process
// (precreate): the two are the largest parts of a pod start and need
// nothing from each other but the namespace files. Only after the network
// is up (and /etc/hosts has the pod IP) does a container's process start
// (p.run → execContainer), so containers still never see the network half
// made. If CNI fails, the created containers are removed again.
func (p *podRT) createSandbox(ctx context.Context) error {
	r, uid := p.rt, p.rec.Pod.UID
	pc := newPhaseClock()
	dir := r.podDir(uid)
	if err := os.MkdirAll(filepath.Join(dir, "ns"), 0o700); err != nil {
		return fmt.Errorf("runtime: %w", err)
	}
	sb := &p.rec.Sandbox
	sb.IPC = filepath.Join(dir, "ns", "ipc")
	sb.UTS = filepath.Join(dir, "ns", "uts")
	if err := p.persist(); err != nil { // record first: a crash from here on leaves something to clean
		return err
	}
	pc.mark("record")
	netns, err := r.cfg.Network.CreateNetns(uid)
	if err != nil {
		return fmt.Errorf("runtime: sandbox %s: %w", uid, err)
	}
	sb.Netns = netns
	if err := network.CreateNamespaceFile(sb.IPC, unix.CLONE_NEWIPC, nil); err != nil {
		return fmt.Errorf("runtime: sandbox %s: %w", uid, err)
	}
	host := p.rec.Pod.hostname()
	if err := network.CreateNamespaceFile(sb.UTS, unix.CLONE_NEWUTS, func() error { return unix.Sethostname([]byte(host)) }); err != nil {
		return fmt.Errorf("runtime: sandbox %s: %w", uid, err)
	}
	pc.mark("namespaces")
	// The files containers bind-mount must exist before they are created;
	// /etc/hosts gets the pod IP once CNI has given one.
	if err := p.writeEtc(); err != nil {
		return err
	}
	if err := p.prepareVolumes(); err != nil {
		return err
	}
	if err := p.startLogs(); err != nil {
		return err
	}
	pc.mark("files")
	precreated := make(chan struct{})
	go func() {
		defer close(precreated)
		p.precreate()
	}()
	sb.Ports = p.hostPorts()
	att, err := r.cfg.Network.Setup(ctx, uid, netns, sb.Ports)
	pc.mark("cni")
	<-precreated
	pc.mark("precreate_wait")
	if err != nil {
		p.abortPrecreated()
		return fmt.Errorf("runtime: sandbox %s: %w", uid, err)
	}
	p.mu.Lock() // status (ListPods) reads the IP while the sandbox is made
	sb.Networked = true
	if att.IP != nil {
		sb.IP = att.IP.String()
	}
	p.mu.Unlock()
	if att.IP != nil {
		// Rewritten in place: containers created above have the file
		// bind-mounted already, and none of their processes has started.
		if err := p.writeEtc(); err != nil {
			p.abortPrecreated()
			return err
		}
	}
	if err := p.persist(); err != nil {
		p.abortPrecreated()
		return err
	}
	pc.mark("hosts_record")
	pc.log(r.log, MsgSandboxPhases, slog.String("pod", uid))
	return nil
}

func (p *podRT) writeEtc() error {
	dir := filepath.Join(p.rt.podDir(p.rec.Pod.UID), "etc")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	host := p.rec.Pod.hostname()
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	if p.rec.Sandbox.IP != "" {
		hosts += p.rec.Sandbox.IP + "\t" + host + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte(hosts), 0o644); err != nil {
		return fmt.Errorf("runtime: /etc/hosts: %w", err)
	}
	if rc := p.rec.Pod.ResolvConf; rc != "" {
		if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(rc), 0o644); err != nil {
			return fmt.Errorf("runtime: /etc/resolv.conf: %w", err)
		}
	}
	return os.WriteFile(filepath.Join(dir, "hostname"), []byte(host+"\n"), 0o644)
}

func (p *podRT) volumeDir(name string) string {
	return filepath.Join(p.rt.podDir(p.rec.Pod.UID), "volumes", name)
}

// prepareVolumes runs each volume type's Prepare hook.
func (p *podRT) prepareVolumes() error {
	for _, v := range p.rec.Pod.Volumes {
		if err := v.Source.Prepare(p.volumeDir(v.Name)); err != nil {
			return fmt.Errorf("runtime: %s volume %q: %w", v.Source.VolumeType(), v.Name, err)
		}
	}
	return nil
}

// tearDownVolumes runs each volume type's TearDown hook.
func (p *podRT) tearDownVolumes() error {
	var errs []error
	for _, v := range p.rec.Pod.Volumes {
		if err := v.Source.TearDown(p.volumeDir(v.Name)); err != nil {
			errs = append(errs, fmt.Errorf("runtime: %s volume %q: %w", v.Source.VolumeType(), v.Name, err))
		}
	}
	return errors.Join(errs...)
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

// mountsUnder lists mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		fields := strings.Fields(l)
		if len(fields) > 4 {
			mp := unescapeMount(fields[4])
			if mp == dir || strings.HasPrefix(mp, dir+"/") {
				out = append(out, mp)
			}
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// teardownSandbox undoes createSandbox; every step tolerates "already gone".
func (p *podRT) teardownSandbox(ctx context.Context) error {
	r, uid := p.rt, p.rec.Pod.UID
	sb := &p.rec.Sandbox
	var errs []error
	if sb.Networked || sb.Netns != "" {
		netns := sb.Netns
		if netns == "" {
			netns = filepath.Join(os.TempDir(), "gone")
		}
		if err := r.cfg.Network.Teardown(ctx, uid, netns, sb.Ports); err != nil {
			errs = append(errs, err)
		} else {
			sb.Networked = false
		}
	}
	if err := r.cfg.Network.DeleteNetns(uid); err != nil {
		errs = append(errs, err)
	}
	for _, f := range []string{sb.IPC, sb.UTS} {
		if f != "" {
			if err := network.DeleteNamespaceFile(f); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := p.tearDownVolumes(); err != nil {
		errs = append(errs, err)
	}
	for _, mp := range mountsUnder(r.podDir(uid)) {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	if err := removeCgroupTree(r.podCgroup(uid)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (r *Runtime) podCgroup(uid string) string {
	return filepath.Join(r.cfg.CgroupRoot, "pods", uid)
}

// cgroupMounts lists the mount points of cgroup (v1) and cgroup2 file
// systems: works on v1, v2 and hybrid hosts alike.
func cgroupMounts() []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(l, " - ")
		if !ok {
			continue
		}
		fs := strings.Fields(post)
		f := strings.Fields(pre)
		if len(fs) > 0 && len(f) > 4 && (fs[0] == "cgroup" || fs[0] == "cgroup2") {
			out = append(out, unescapeMount(f[4]))
		}
	}
	return out
}

// removeCgroupTree removes the cgroup directory rel (absolute cgroup path)
// and its children in every hierarchy. Empty cgroups only: the caller has
// stopped the processes.
func removeCgroupTree(rel string) error {
	var errs []error
	for _, mnt := range cgroupMounts() {
		root := filepath.Join(mnt, rel)
		var dirs []string
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := unix.Rmdir(dirs[i]); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("rmdir cgroup %s: %w", dirs[i], err))
			}
		}
	}
	return errors.Join(errs...)
}
