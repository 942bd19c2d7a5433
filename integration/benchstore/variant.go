package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/skiffhq/skiff/consensus"
)

// A variant is a Skiff system with replication knobs changed, for A/B runs
// in one benchmark (both clusters see the same background load):
// "skiff:inflight=1" or "skiff-wal:maxappend=64,commit=2ms". The knobs:
//
//	inflight   Config.MaxRPCsInFlight (1 = no pipelined replication)
//	maxappend  Config.MaxAppendEntries
//	commit     Config.CommitTimeout
//
// The summary lines stay those of the plain systems; each variant gets
// its own table and a store-bench-variant line.
type variant struct {
	name string // as given, e.g. "skiff:inflight=1"
	base string // sysSkiff or sysSkiffWAL
	set  []func(*consensus.Config)
}

// parseVariant reads a system name with knobs; ok is false for a plain name.
func parseVariant(name string) (v variant, ok bool, err error) {
	base, knobs, found := strings.Cut(name, ":")
	if !found {
		return variant{}, false, nil
	}
	if base != sysSkiff && base != sysSkiffWAL {
		return variant{}, true, fmt.Errorf("systems: %q: knobs apply to %s or %s only", name, sysSkiff, sysSkiffWAL)
	}
	v = variant{name: name, base: base}
	for _, kv := range strings.Split(knobs, ",") {
		k, val, found := strings.Cut(kv, "=")
		if !found {
			return variant{}, true, fmt.Errorf("systems: %q: knob %q is not key=value", name, kv)
		}
		switch k {
		case "inflight", "maxappend":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 {
				return variant{}, true, fmt.Errorf("systems: %q: %s=%q is not a positive integer", name, k, val)
			}
			if k == "inflight" {
				v.set = append(v.set, func(c *consensus.Config) { c.MaxRPCsInFlight = n })
			} else {
				v.set = append(v.set, func(c *consensus.Config) { c.MaxAppendEntries = n })
			}
		case "commit":
			d, err := time.ParseDuration(val)
			if err != nil || d <= 0 {
				return variant{}, true, fmt.Errorf("systems: %q: commit=%q is not a positive duration", name, val)
			}
			v.set = append(v.set, func(c *consensus.Config) { c.CommitTimeout = d })
		default:
			return variant{}, true, fmt.Errorf("systems: %q: unknown knob %q (want inflight, maxappend, commit)", name, k)
		}
	}
	return v, true, nil
}

// tune is the base system's tune with the variant's knobs on top.
func (v variant) tune(c *consensus.Config) {
	if v.base == sysSkiffWAL {
		skiffWALTune(c)
	} else {
		skiffTune(c)
	}
	for _, f := range v.set {
		f(c)
	}
}

func (v variant) logStore() string {
	if v.base == sysSkiffWAL {
		return "raft-wal"
	}
	return "raft-boltdb"
}
