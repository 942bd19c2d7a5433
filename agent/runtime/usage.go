package runtime

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
)

// statser is the part of a libcontainer container Usage reads.
type statser interface {
	Stats() (*libcontainer.Stats, error)
}

// ContainerUsage is one reading of a running container's cgroup (through
// libcontainer's cgroup manager, so cgroup v1, v2 and hybrid hosts alike):
// its cumulative CPU time and its memory working set (usage less inactive
// file pages, the number the kubelet reports and the OOM killer weighs).
type ContainerUsage struct {
	Name             string
	CPUNanos         uint64
	MemoryWorkingSet uint64
}

// PodUsage is the reading of one pod's running containers.
type PodUsage struct {
	UID        string
	Namespace  string
	Name       string
	Containers []ContainerUsage
	ReadAt     time.Time
}

// Usage reads every pod with a running container. A container whose
// cgroup cannot be read (it is ending) is left out.
func (r *Runtime) Usage() []PodUsage {
	r.mu.Lock()
	pods := make([]*podRT, 0, len(r.pods))
	for _, p := range r.pods {
		pods = append(pods, p)
	}
	r.mu.Unlock()
	var out []PodUsage
	for _, p := range pods {
		p.mu.Lock()
		u := PodUsage{UID: p.rec.Pod.UID, Namespace: p.rec.Pod.Namespace, Name: p.rec.Pod.Name}
		var ctrs []*ctrRT
		for _, c := range p.order {
			if c.lc != nil && !c.isInit {
				ctrs = append(ctrs, c)
			}
		}
		lcs := make([]statser, len(ctrs))
		for i, c := range ctrs {
			lcs[i] = c.lc
		}
		p.mu.Unlock()
		for i, c := range ctrs {
			st, err := lcs[i].Stats()
			if err != nil || st.CgroupStats == nil {
				continue
			}
			u.Containers = append(u.Containers, ContainerUsage{Name: c.spec.Name,
				CPUNanos: st.CgroupStats.CpuStats.CpuUsage.TotalUsage, MemoryWorkingSet: workingSet(&st.CgroupStats.MemoryStats)})
		}
		u.ReadAt = time.Now()
		if len(u.Containers) > 0 {
			out = append(out, u)
		}
	}
	return out
}

// workingSet is usage less inactive file pages (v1: total_inactive_file,
// v2: inactive_file), never below zero.
func workingSet(m *cgroups.MemoryStats) uint64 {
	inactive, ok := m.Stats["total_inactive_file"]
	if !ok {
		inactive = m.Stats["inactive_file"]
	}
	if inactive > m.Usage.Usage {
		return 0
	}
	return m.Usage.Usage - inactive
}

// NodeUsage is one reading of the whole machine: CPU time of all CPUs
// (/proc/stat, busy time only) and memory in use (MemTotal less
// MemAvailable, /proc/meminfo). Read from /proc rather than the root
// cgroup, which cgroup v2 leaves without memory files.
type NodeUsage struct {
	CPUNanos    uint64
	MemoryBytes uint64
	ReadAt      time.Time
}

// ReadNodeUsage reads the machine's usage.
func ReadNodeUsage() (NodeUsage, error) {
	u := NodeUsage{ReadAt: time.Now()}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return u, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return u, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	// user nice system idle iowait irq softirq steal …: busy is all but
	// idle and iowait; the unit is USER_HZ (100 per second on Linux).
	var busy uint64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is in user already
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return u, fmt.Errorf("/proc/stat: field %d %q: %w", i+1, v, err)
		}
		busy += n
	}
	u.CPUNanos = busy * uint64(time.Second/100)
	mf, err := os.Open("/proc/meminfo")
	if err != nil {
		return u, err
	}
	defer mf.Close()
	var total, avail uint64
	sc := bufio.NewScanner(mf)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "MemTotal":
			total = n << 10
		case "MemAvailable":
			avail = n << 10
		}
	}
	if total == 0 {
		return u, fmt.Errorf("/proc/meminfo: no MemTotal")
	}
	u.MemoryBytes = total - min(avail, total)
	return u, sc.Err()
}
