package runtime

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/sys/capability"
	"github.com/moby/sys/user"
	"github.com/opencontainers/cgroups"
	devcfg "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"golang.org/x/sys/unix"

	"github.com/skiffhq/skiff/agent/image"
)

// defaultCaps is the container runtimes' customary default set.
var defaultCaps = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// capName turns "net_admin", "NET_ADMIN" or "CAP_NET_ADMIN" into
// "CAP_NET_ADMIN" ("ALL" stays), rejecting unknown names.
func capName(s string) (string, error) {
	u := strings.ToUpper(strings.TrimPrefix(strings.ToUpper(s), "CAP_"))
	if u == "ALL" {
		return u, nil
	}
	for _, c := range capability.ListKnown() {
		if strings.ToUpper(c.String()) == u {
			return "CAP_" + u, nil
		}
	}
	return "", fmt.Errorf("unknown capability %q", s)
}

func containerCaps(sc *SecurityContext) []string {
	caps := slices.Clone(defaultCaps)
	if sc == nil || sc.Capabilities == nil {
		return caps
	}
	for _, d := range sc.Capabilities.Drop {
		n, _ := capName(d)
		if n == "ALL" {
			caps = nil
			continue
		}
		caps = slices.DeleteFunc(caps, func(c string) bool { return c == n })
	}
	for _, a := range sc.Capabilities.Add {
		n, _ := capName(a)
		if n == "ALL" {
			caps = caps[:0]
			for _, c := range capability.ListKnown() {
				caps = append(caps, "CAP_"+strings.ToUpper(c.String()))
			}
			continue
		}
		if !slices.Contains(caps, n) {
			caps = append(caps, n)
		}
	}
	return caps
}

// processArgs applies Kubernetes' rules for command/args over the image's
// entrypoint/cmd.
func processArgs(c *Container, ic image.RuntimeConfig) ([]string, error) {
	var args []string
	switch {
	case len(c.Command) > 0:
		args = append(slices.Clone(c.Command), c.Args...)
	case len(c.Args) > 0:
		args = append(slices.Clone(ic.Entrypoint), c.Args...)
	default:
		args = append(slices.Clone(ic.Entrypoint), ic.Cmd...)
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("container %q: no command: neither the pod nor the image sets one", c.Name)
	}
	return args, nil
}

// processEnv: a default PATH, then the image's env, then HOSTNAME, then the
// container's (later wins, as in Kubernetes).
func processEnv(c *Container, ic image.RuntimeConfig, hostname, podIP string) []string {
	env := map[string]string{}
	var order []string
	set := func(kv string) {
		k, v, _ := strings.Cut(kv, "=")
		if _, ok := env[k]; !ok {
			order = append(order, k)
		}
		env[k] = v
	}
	set(defaultPath)
	for _, kv := range ic.Env {
		set(kv)
	}
	set("HOSTNAME=" + hostname)
	for _, e := range withPodIP(c.Env, podIP) {
		set(e.Name + "=" + e.Value)
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+env[k])
	}
	return out
}

// processUser resolves runAsUser/runAsGroup or the image's USER ("name",
// "uid", "name:group", "uid:gid") against the rootfs' /etc/passwd and group.
func processUser(c *Container, ic image.RuntimeConfig, rootfs string) (*user.ExecUser, error) {
	spec := ic.User
	if sc := c.SecurityContext; sc != nil && sc.RunAsUser != nil {
		spec = strconv.FormatInt(*sc.RunAsUser, 10)
		if sc.RunAsGroup != nil {
			spec += ":" + strconv.FormatInt(*sc.RunAsGroup, 10)
		}
	} else if sc != nil && sc.RunAsGroup != nil {
		u, _, _ := strings.Cut(spec, ":")
		if u == "" {
			u = "0"
		}
		spec = u + ":" + strconv.FormatInt(*sc.RunAsGroup, 10)
	}
	passwd, err := securejoin.SecureJoin(rootfs, "/etc/passwd")
	if err != nil {
		return nil, err
	}
	group, err := securejoin.SecureJoin(rootfs, "/etc/group")
	if err != nil {
		return nil, err
	}
	u, err := user.GetExecUserPath(spec, &user.ExecUser{Uid: 0, Gid: 0, Home: "/"}, passwd, group)
	if err != nil {
		return nil, fmt.Errorf("container %q: user %q: %w", c.Name, spec, err)
	}
	return u, nil
}

// cgroupResources maps Kubernetes requests/limits to cgroup settings:
// cpu.shares from the cpu request (limit if no request; 2 for none),
// CFS quota from the cpu limit, the memory limit, and a pids limit.
func cgroupResources(r Resources, pidsLimit int64) *cgroups.Resources {
	const period = 100000
	res := &cgroups.Resources{}
	req := r.Requests.MilliCPU
	if req == 0 {
		req = r.Limits.MilliCPU
	}
	shares := uint64(req * 1024 / 1000)
	if shares < 2 {
		shares = 2
	}
	res.CpuShares = shares
	if r.Limits.MilliCPU > 0 {
		quota := r.Limits.MilliCPU * period / 1000
		if quota < 1000 {
			quota = 1000
		}
		res.CpuQuota, res.CpuPeriod = quota, period
	}
	if r.Limits.Memory > 0 {
		res.Memory = r.Limits.Memory
	}
	if pidsLimit > 0 {
		res.PidsLimit = &pidsLimit
	}
	for _, d := range specconv.AllowedDevices {
		res.Devices = append(res.Devices, &devcfg.Rule{Type: d.Type, Major: d.Major, Minor: d.Minor, Permissions: d.Permissions, Allow: d.Allow})
	}
	return res
}

// mountSpec is a bind mount of a pod-level path into the container.
type mountSpec struct {
	source, dest string
	readOnly     bool
}

// lcConfig builds the libcontainer config of one container.
func lcConfig(p *Pod, c *Container, sb *sandbox, rootfs, cgroupPath string, pidsLimit int64, mounts []mountSpec) *configs.Config {
	const defaultMountFlags = unix.MS_NOEXEC | unix.MS_NOSUID | unix.MS_NODEV
	caps := containerCaps(c.SecurityContext)
	readonly := c.SecurityContext != nil && c.SecurityContext.ReadOnlyRootFilesystem
	cfg := &configs.Config{
		Rootfs:     rootfs,
		Readonlyfs: readonly,
		Capabilities: &configs.Capabilities{
			Bounding: caps, Effective: caps, Permitted: caps,
		},
		Namespaces: configs.Namespaces([]configs.Namespace{
			{Type: configs.NEWNS},
			{Type: configs.NEWPID},
			{Type: configs.NEWNET, Path: sb.Netns},
			{Type: configs.NEWIPC, Path: sb.IPC},
			{Type: configs.NEWUTS, Path: sb.UTS},
		}),
		Cgroups: &cgroups.Cgroup{
			Path:      cgroupPath,
			Resources: cgroupResources(c.Resources, pidsLimit),
		},
		MaskPaths: []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
			"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"},
		ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		Devices:       specconv.AllowedDevices,
		NoNewKeyring:  true,
		Mounts: []*configs.Mount{
			{Source: "proc", Destination: "/proc", Device: "proc", Flags: defaultMountFlags},
			{Source: "tmpfs", Destination: "/dev", Device: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_STRICTATIME, Data: "mode=755,size=65536k"},
			{Source: "devpts", Destination: "/dev/pts", Device: "devpts", Flags: unix.MS_NOSUID | unix.MS_NOEXEC, Data: "newinstance,ptmxmode=0666,mode=0620,gid=5"},
			{Source: "shm", Destination: "/dev/shm", Device: "tmpfs", Flags: defaultMountFlags, Data: "mode=1777,size=65536k"},
			{Source: "mqueue", Destination: "/dev/mqueue", Device: "mqueue", Flags: defaultMountFlags},
			{Source: "sysfs", Destination: "/sys", Device: "sysfs", Flags: defaultMountFlags | unix.MS_RDONLY},
			{Source: "cgroup", Destination: "/sys/fs/cgroup", Device: "cgroup", Flags: defaultMountFlags | unix.MS_RDONLY},
		},
		Rlimits: []configs.Rlimit{nofileLimit()},
	}
	for _, m := range mounts {
		flags := unix.MS_BIND | unix.MS_REC
		if m.readOnly {
			flags |= unix.MS_RDONLY
		}
		cfg.Mounts = append(cfg.Mounts, &configs.Mount{Source: m.source, Destination: filepath.Clean(m.dest), Device: "bind", Flags: flags})
	}
	return cfg
}

// nofileLimit raises the soft open-files limit to the agent's hard limit
// (raising the hard limit itself would need CAP_SYS_RESOURCE in the
// container).
func nofileLimit() configs.Rlimit {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		rl.Max = 1024
	}
	return configs.Rlimit{Type: unix.RLIMIT_NOFILE, Hard: rl.Max, Soft: rl.Max}
}
