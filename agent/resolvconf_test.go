package agent

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

const nodeResolv = "# node\ndomain corp.test\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions timeout:2 attempts:3\n"

func TestPodResolvConfByDNSPolicy(t *testing.T) {
	cluster := &ClusterDNS{Nameserver: netip.MustParseAddr("10.96.0.10"), Domain: "cluster.local"}
	clusterFile := "search shop.svc.cluster.local svc.cluster.local cluster.local corp.test\nnameserver 10.96.0.10\noptions ndots:5\n"
	nodeFile := "search corp.test\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions timeout:2 attempts:3\n"
	for _, c := range []struct {
		name    string
		spec    *apiv1.PodSpec
		cluster *ClusterDNS
		want    string
	}{
		{"ClusterFirst", &apiv1.PodSpec{DnsPolicy: "ClusterFirst"}, cluster, clusterFile},
		{"empty policy is ClusterFirst", &apiv1.PodSpec{}, cluster, clusterFile},
		{"ClusterFirst without a cluster DNS", &apiv1.PodSpec{DnsPolicy: "ClusterFirst"}, nil, nodeFile},
		{"ClusterFirst hostNetwork", &apiv1.PodSpec{DnsPolicy: "ClusterFirst", HostNetwork: true}, cluster, nodeFile},
		{"ClusterFirstWithHostNet hostNetwork", &apiv1.PodSpec{DnsPolicy: "ClusterFirstWithHostNet", HostNetwork: true}, cluster, clusterFile},
		{"Default", &apiv1.PodSpec{DnsPolicy: "Default"}, cluster, nodeFile},
		{"None with dnsConfig", &apiv1.PodSpec{DnsPolicy: "None", DnsConfig: &apiv1.PodDNSConfig{
			Nameservers: []string{"192.0.2.99"}, Searches: []string{"a.test", "b.test"},
			Options: []*apiv1.PodDNSConfigOption{{Name: "ndots", Value: str("2")}, {Name: "edns0"}}}}, cluster,
			"search a.test b.test\nnameserver 192.0.2.99\noptions ndots:2 edns0\n"},
		{"ClusterFirst merged with dnsConfig", &apiv1.PodSpec{DnsConfig: &apiv1.PodDNSConfig{
			Nameservers: []string{"192.0.2.99", "10.96.0.10"}, Searches: []string{"extra.test", "svc.cluster.local"},
			Options: []*apiv1.PodDNSConfigOption{{Name: "ndots", Value: str("1")}, {Name: "single-request-reopen"}}}}, cluster,
			"search shop.svc.cluster.local svc.cluster.local cluster.local corp.test extra.test\nnameserver 10.96.0.10\nnameserver 192.0.2.99\noptions ndots:1 single-request-reopen\n"},
	} {
		got, err := podResolvConf(c.spec, "shop", c.cluster, []byte(nodeResolv))
		if err != nil || got != c.want {
			t.Errorf("%s: got %q (%v), want %q", c.name, got, err, c.want)
		}
	}
}

func TestPodResolvConfRefusesBadInput(t *testing.T) {
	for _, c := range []struct {
		spec *apiv1.PodSpec
		want string
	}{
		{&apiv1.PodSpec{DnsPolicy: "Sometimes"}, `spec.dnsPolicy "Sometimes"`},
		{&apiv1.PodSpec{DnsPolicy: "None", DnsConfig: &apiv1.PodDNSConfig{Searches: []string{"a.test"}}}, "dnsPolicy None needs at least one nameserver"},
		{&apiv1.PodSpec{DnsConfig: &apiv1.PodDNSConfig{Nameservers: []string{"dns.example"}}}, `spec.dnsConfig.nameservers[0] "dns.example"`},
	} {
		if _, err := podResolvConf(c.spec, "shop", nil, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error naming %q", c.spec, err, c.want)
		}
	}
}
func str(s string) *string { return &s }

// Until the cluster DNS is known a ClusterFirst pod waits (a retried pod
// configuration error); pods that do not ask for it never do.
func TestResolvConfWaitsForTheClusterDNSOnlyWhenAsked(t *testing.T) {
	asked := 0
	a := &Agent{cfg: Config{ClusterDNS: func(context.Context) (ClusterDNS, error) {
		asked++
		return ClusterDNS{}, errors.New("the cluster DNS Service kube-system/kube-dns has no address yet")
	}}}
	pod := func(policy string) *apiv1.Pod {
		return &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Namespace: "shop", Name: "p"}, Spec: &apiv1.PodSpec{DnsPolicy: policy}}
	}
	_, err := a.resolvConfFor(context.Background(), pod("ClusterFirst"))
	if !errors.Is(err, ErrPodConfig) || !strings.Contains(err.Error(), "kube-dns") {
		t.Fatalf("ClusterFirst before the cluster DNS is known: %v, want a pod configuration error naming kube-dns", err)
	}
	if rc, err := a.resolvConfFor(context.Background(), pod("Default")); err != nil || asked != 1 {
		t.Fatalf("Default: %q, %v; the cluster DNS was asked %d times, want once (for the ClusterFirst pod only)", rc, err, asked)
	}
}
