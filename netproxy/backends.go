package netproxy

import (
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"github.com/vishvananda/netns"
)

// backendType is one Service data path, registered by its own file's init
// (ipvs.go, nft.go): a new backend is one file and one registerBackend
// call, never an edit to chooseBackend.
type backendType struct {
	name string
	// preference orders the types "auto" tries: the lowest that probes
	// fine wins.
	preference int
	// probe says whether this kernel (in ns) can run the backend, and
	// why; nil means always.
	probe func(ns netns.NsHandle) (reason string, ok bool)
	// unavailable is the error for a backend configured by name whose
	// probe fails (ErrNoIPVS).
	unavailable error
	build       func(cfg Config, ns netns.NsHandle, log *slog.Logger) (backend, error)
}

var backendTypes = map[string]backendType{}

func registerBackend(t backendType) {
	if _, dup := backendTypes[t.name]; dup || t.name == BackendAuto {
		panic(fmt.Sprintf("netproxy: backend %q registered twice or reserved", t.name))
	}
	backendTypes[t.name] = t
}

// backendNames lists "auto" and the registered backends.
func backendNames() string {
	names := []string{BackendAuto}
	for n := range backendTypes {
		names = append(names, n)
	}
	sort.Strings(names[1:])
	return strings.Join(names, ", ")
}

// chooseBackend builds the configured backend, or for "auto" (or "") the
// most preferred one this kernel supports, and logs which and why.
func (p *Proxy) chooseBackend() error {
	want := p.cfg.Backend
	if want == "" {
		want = BackendAuto
	}
	var candidates []backendType
	if want == BackendAuto {
		for _, t := range backendTypes {
			candidates = append(candidates, t)
		}
		sort.Slice(candidates, func(i, j int) bool { return candidates[i].preference < candidates[j].preference })
	} else {
		t, ok := backendTypes[want]
		if !ok {
			return fmt.Errorf("%w: config: backend=%q: want one of %s", ErrInvalid, p.cfg.Backend, backendNames())
		}
		candidates = []backendType{t}
	}
	var passed []string // why preferred backends were passed over
	for _, t := range candidates {
		reason, ok := "", true
		if t.probe != nil {
			reason, ok = t.probe(p.ns)
		}
		if !ok {
			if want != BackendAuto {
				return fmt.Errorf("%w: %s", t.unavailable, reason)
			}
			passed = append(passed, reason)
			continue
		}
		b, err := t.build(p.cfg, p.ns, p.log)
		if err != nil {
			return err
		}
		p.backend = b
		why := "configured"
		if want == BackendAuto {
			why = "auto"
		}
		for _, r := range append(passed, reason) {
			if r != "" {
				why += "; " + r
			}
		}
		p.log.Info("service data path backend chosen", "backend", t.name, "reason", why)
		return nil
	}
	return fmt.Errorf("%w: no backend works here: %s", ErrInvalid, strings.Join(passed, "; "))
}
