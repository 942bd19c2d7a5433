package node

import (
	"bufio"
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

// GCPercent is a control node's GOGC when the environment sets none. A
// control node's allocations are short-lived (decoded objects, watch
// events, Raft batches) over a large live heap (the store, its watch
// history, the leader's caches), so Go's default of 100 spends about a
// sixth of its CPU marking that heap again and again; 200 halves how often
// (measured: 10-15 % less CPU per pod in make bench-scheduler), for more
// memory headroom, which MemoryLimitFraction bounds.
const GCPercent = 200

// MemoryLimitFraction of the machine's (or the cgroup's) memory is the
// soft limit set when GOMEMLIMIT is unset: near it the collector runs as
// often as it must, so the higher GCPercent never costs an out-of-memory.
const MemoryLimitFraction = 0.75

// TuneRuntime applies GCPercent and the memory limit, each unless the
// environment (GOGC, GOMEMLIMIT) already chose. Control nodes call it
// when they start; it affects the whole process.
func TuneRuntime(log *slog.Logger) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(GCPercent)
		log.Debug("go runtime", "gogc", GCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		if total := availableMemory(); total > 0 {
			limit := int64(float64(total) * MemoryLimitFraction)
			debug.SetMemoryLimit(limit)
			log.Debug("go runtime", "memory_limit_bytes", limit)
		}
	}
}

// availableMemory is the smaller of the machine's memory and this
// process's cgroup v2 limit, in bytes (0 when unknown).
func availableMemory() uint64 {
	total := memTotal()
	if limit := cgroupMemoryMax(); limit > 0 && (total == 0 || limit < total) {
		return limit
	}
	return total
}

func memTotal() uint64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseUint(fields[1], 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// cgroupMemoryMax reads memory.max of the process's cgroup v2 ("0::<path>"
// in /proc/self/cgroup); 0 when unlimited or not on cgroup v2.
func cgroupMemoryMax() uint64 {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		path, ok := bytes.CutPrefix(line, []byte("0::"))
		if !ok {
			continue
		}
		v, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", string(path), "memory.max"))
		if err != nil {
			return 0
		}
		n, err := strconv.ParseUint(strings.TrimSpace(string(v)), 10, 64)
		if err != nil {
			return 0 // "max"
		}
		return n
	}
	return 0
}
