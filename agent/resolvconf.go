package agent

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// ClusterDNS is the cluster's DNS as the node knows it: the address its
// pods query and the cluster domain.
type ClusterDNS struct {
	Nameserver netip.Addr
	Domain     string
}

// ClusterDNSSource tells the cluster's DNS settings; an error means they
// are not known yet (the pod waits and is retried).
type ClusterDNSSource func(ctx context.Context) (ClusterDNS, error)

// resolvConfig is a parsed resolv.conf.
type resolvConfig struct {
	nameservers, searches, options []string
}

// parseResolvConf reads the nameserver, search/domain and options lines.
func parseResolvConf(b []byte) resolvConfig {
	var rc resolvConfig
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			rc.nameservers = append(rc.nameservers, f[1])
		case "search", "domain":
			rc.searches = f[1:]
		case "options":
			rc.options = append(rc.options, f[1:]...)
		}
	}
	return rc
}

func (rc resolvConfig) String() string {
	var b strings.Builder
	if len(rc.searches) > 0 {
		b.WriteString("search " + strings.Join(rc.searches, " ") + "\n")
	}
	for _, n := range rc.nameservers {
		b.WriteString("nameserver " + n + "\n")
	}
	if len(rc.options) > 0 {
		b.WriteString("options " + strings.Join(rc.options, " ") + "\n")
	}
	return b.String()
}

// Kubernetes' limits on a pod's resolv.conf (kubelet's validation).
const (
	maxNameservers = 3
	maxSearches    = 32
)

// podResolvConf is the /etc/resolv.conf of a pod, by its dnsPolicy as
// kubelet writes it: ClusterFirst (the cluster DNS, search
// <ns>.svc.<domain> svc.<domain> <domain> plus the node's, ndots:5; the
// node's file for a hostNetwork pod), ClusterFirstWithHostNet (the
// cluster's for every pod), Default (the node's), None (only dnsConfig);
// spec.dnsConfig then adds nameservers and searches and sets options.
// cluster is nil when the cluster has no DNS.
func podResolvConf(spec *apiv1.PodSpec, ns string, cluster *ClusterDNS, node []byte) (string, error) {
	policy := spec.GetDnsPolicy()
	if policy == "" {
		policy = "ClusterFirst"
	}
	useCluster, err := usesClusterDNS(spec)
	if err != nil {
		return "", err
	}
	host := parseResolvConf(node)
	var rc resolvConfig
	switch {
	case policy == "None":
	case useCluster && cluster != nil:
		d := cluster.Domain
		rc.nameservers = []string{cluster.Nameserver.String()}
		rc.searches = append([]string{ns + ".svc." + d, "svc." + d, d}, host.searches...)
		rc.options = []string{"ndots:5"}
	default:
		rc = host
	}
	if c := spec.GetDnsConfig(); c != nil {
		for i, n := range c.GetNameservers() {
			if _, err := netip.ParseAddr(n); err != nil {
				return "", configErr("spec.dnsConfig.nameservers[%d] %q: not an IP address", i, n)
			}
		}
		rc.nameservers = appendNew(rc.nameservers, c.GetNameservers()...)
		rc.searches = appendNew(rc.searches, c.GetSearches()...)
		for _, o := range c.GetOptions() {
			rc.options = setOption(rc.options, o.GetName(), o.GetValue())
		}
	}
	if len(rc.nameservers) > maxNameservers {
		rc.nameservers = rc.nameservers[:maxNameservers]
	}
	if len(rc.searches) > maxSearches {
		rc.searches = rc.searches[:maxSearches]
	}
	if policy == "None" && len(rc.nameservers) == 0 {
		return "", configErr("spec.dnsConfig.nameservers: dnsPolicy None needs at least one nameserver")
	}
	return rc.String(), nil
}

// usesClusterDNS says whether the pod's dnsPolicy asks for the cluster
// DNS: ClusterFirst (unless hostNetwork) and ClusterFirstWithHostNet.
func usesClusterDNS(spec *apiv1.PodSpec) (bool, error) {
	switch p := spec.GetDnsPolicy(); p {
	case "ClusterFirst", "":
		return !spec.GetHostNetwork(), nil
	case "ClusterFirstWithHostNet":
		return true, nil
	case "Default", "None":
		return false, nil
	default:
		return false, configErr("spec.dnsPolicy %q: want ClusterFirst, ClusterFirstWithHostNet, Default or None", p)
	}
}

func appendNew(list []string, add ...string) []string {
	for _, a := range add {
		if a != "" && !slices.Contains(list, a) {
			list = append(list, a)
		}
	}
	return list
}

// setOption sets name (with value, if any) in opts, replacing an option
// of that name (the pod's dnsConfig wins, as in kubelet).
func setOption(opts []string, name, value string) []string {
	o := name
	if value != "" {
		o = name + ":" + value
	}
	for i, cur := range opts {
		if n, _, _ := strings.Cut(cur, ":"); n == name {
			opts[i] = o
			return opts
		}
	}
	return append(opts, o)
}

// resolvConfFor is the pod's resolv.conf from the agent's sources.
func (a *Agent) resolvConfFor(ctx context.Context, pod *apiv1.Pod) (string, error) {
	var cluster *ClusterDNS
	if use, _ := usesClusterDNS(pod.GetSpec()); use && a.cfg.ClusterDNS != nil {
		d, err := a.cfg.ClusterDNS(ctx)
		if err != nil {
			return "", fmt.Errorf("%w: dnsPolicy %s: %w", ErrPodConfig, pod.GetSpec().GetDnsPolicy(), err)
		}
		cluster = &d
	}
	var node []byte
	if a.cfg.ResolvConf != "" {
		b, err := os.ReadFile(a.cfg.ResolvConf)
		if err != nil && !os.IsNotExist(err) {
			return "", fmt.Errorf("%w: the node's resolv.conf: %w", ErrPodConfig, err)
		}
		node = b
	}
	return podResolvConf(pod.GetSpec(), pod.GetMetadata().GetNamespace(), cluster, node)
}
