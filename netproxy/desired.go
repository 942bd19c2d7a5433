package netproxy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// servicePortState is the backend-neutral picture of one Service port:
// what the kernel must do for traffic to (ClusterIPs, Port, Protocol) and to
// (every node address, NodePort, Protocol).
type servicePortState struct {
	ID         string // stable: namespace/name:protocol/port
	Service    ServiceKey
	Port       ServicePort
	ClusterIPs []netip.Addr
	Affinity   time.Duration
	// Ready endpoints get new connections; Terminating ones (listed but not
	// ready) get none but keep their established ones.
	Ready       []netip.AddrPort
	Terminating []netip.AddrPort
}

// desiredState maps servicePortState.ID to the state.
type desiredState map[string]*servicePortState

func buildDesired(services map[ServiceKey]Service, endpoints map[ServiceKey]Endpoints) desiredState {
	out := make(desiredState)
	for key, svc := range services {
		eps := endpoints[key]
		for _, p := range svc.Ports {
			st := &servicePortState{
				ID:         fmt.Sprintf("%s:%s/%d", key, p.Protocol, p.Port),
				Service:    key,
				Port:       p,
				ClusterIPs: slices.Clone(svc.ClusterIPs),
				Affinity:   svc.AffinityTimeout,
			}
			slices.SortFunc(st.ClusterIPs, func(a, b netip.Addr) int { return a.Compare(b) })
			for _, ep := range eps.Endpoints {
				ap := netip.AddrPortFrom(ep.IP, p.TargetPort)
				if ep.Ready && !ep.Terminating {
					st.Ready = append(st.Ready, ap)
				} else {
					st.Terminating = append(st.Terminating, ap)
				}
			}
			st.Ready = sortedUnique(st.Ready)
			st.Terminating = sortedUnique(st.Terminating)
			out[st.ID] = st
		}
	}
	return out
}

func sortedUnique(a []netip.AddrPort) []netip.AddrPort {
	slices.SortFunc(a, func(x, y netip.AddrPort) int { return x.Compare(y) })
	return slices.Compact(a)
}

// shortHash names kernel objects after their content, so that comparing
// names is comparing content.
func shortHash(n int, parts ...any) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%v\x00", p)
	}
	return hex.EncodeToString(h.Sum(nil))[:n]
}
