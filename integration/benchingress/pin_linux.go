package main

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// splitCPUs divides the CPUs this process may use into one for the load
// generator (wrk) and the rest for what is measured (the proxy under
// test and the backends); ok is false with fewer than two CPUs.
//
// Why: unpinned, wrk's threads compete with the proxy for the same
// cores, so a proxy that spends less CPU per request leaves that CPU to
// wrk, and the saving shows as a tie in req/s (BENCHMARKS.md, 18:55
// run: 11 % less CPU per request than nginx, 1.01× its req/s). With the
// client on a core of its own, req/s and latency measure the proxy and
// the backends, as a load generator on another machine would.
func splitCPUs() (client int, servers []int, ok bool) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return 0, nil, false
	}
	var cpus []int
	for c := range 1024 {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	if len(cpus) < 2 {
		return 0, nil, false
	}
	return cpus[0], cpus[1:], true
}

// pinProcess restricts every thread of this process to cpus; threads and
// child processes started later inherit it.
func pinProcess(cpus []int) error {
	var set unix.CPUSet
	set.Zero()
	for _, c := range cpus {
		set.Set(c)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			return fmt.Errorf("pin thread %d to CPUs %v: %w", tid, cpus, err)
		}
	}
	return nil
}
