package clusternet

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string // "" when valid
	}{
		{Default(), ""},
		{Config{ClusterCIDR: "10.0.0.0/8", NodeCIDRMaskSize: 24}, ""},
		{Config{ClusterCIDR: "10.244.0.0/16", NodeCIDRMaskSize: 30}, ""},
		{Config{ClusterCIDR: "10.244.0.0/16", NodeCIDRMaskSize: 31}, "between the cluster CIDR's /16 and /30"},
		{Config{ClusterCIDR: "10.244.0.0/16", NodeCIDRMaskSize: 15}, "between the cluster CIDR's /16 and /30"},
		{Config{ClusterCIDR: "10.244.1.0/16", NodeCIDRMaskSize: 24}, "has host bits set (did you mean 10.244.0.0/16?)"},
		{Config{ClusterCIDR: "fd00::/48", NodeCIDRMaskSize: 64}, "only IPv4"},
		{Config{ClusterCIDR: "10.244.0.0", NodeCIDRMaskSize: 24}, `cluster CIDR "10.244.0.0"`},
		{Config{ClusterCIDR: "0.0.0.0/0", NodeCIDRMaskSize: 30}, "more than 2^24 node ranges"},
		{Config{ClusterCIDR: "10.244.0.0/16", NodeCIDRMaskSize: 24, ClusterDomain: "corp.example."}, ""},
		{Config{ClusterCIDR: "10.244.0.0/16", NodeCIDRMaskSize: 24, ClusterDomain: "Cluster.Local"}, `cluster domain "Cluster.Local"`},
		{Config{ClusterCIDR: "10.244.0.0/16", NodeCIDRMaskSize: 24, ClusterDomain: "a..b"}, `cluster domain "a..b"`},
	} {
		_, err := c.cfg.Parse()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v", c.cfg, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
}

func TestBlocks(t *testing.T) {
	n, err := Config{ClusterCIDR: "10.244.0.0/16", NodeCIDRMaskSize: 24}.Parse()
	if err != nil {
		t.Fatal(err)
	}
	if n.Size() != 256 || n.At(0).String() != "10.244.0.0/24" || n.At(255).String() != "10.244.255.0/24" {
		t.Fatalf("size %d, first %s, last %s", n.Size(), n.At(0), n.At(255))
	}
	if i, ok := n.Index(n.At(77)); !ok || i != 77 {
		t.Fatalf("Index(At(77)) = %d, %v", i, ok)
	}
	for _, c := range []struct{ cidr, want, err string }{
		{"10.244.3.0/24", "[10.244.3.0/24]", ""},
		{"10.244.2.0/23", "[10.244.2.0/24 10.244.3.0/24]", ""},
		{"10.244.3.64/26", "[10.244.3.0/24]", ""},
		{"10.244.0.0/15", "", "not inside the cluster range"},
		{"10.245.0.0/24", "", "not inside the cluster range"},
		{"10.244.3.1/24", "", "host bits"},
		{"10.244.3.4/31", "", "too small"},
		{"nonsense", "", "not a CIDR"},
	} {
		bs, err := n.Blocks(c.cidr)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("Blocks(%s): %v, want %q", c.cidr, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Blocks(%s): %v", c.cidr, err)
			continue
		}
		got := make([]string, len(bs))
		for i, b := range bs {
			got[i] = b.String()
		}
		if s := "[" + strings.Join(got, " ") + "]"; s != c.want {
			t.Errorf("Blocks(%s) = %s, want %s", c.cidr, s, c.want)
		}
	}
	if _, err := (Network{Cluster: n.Cluster, NodeBits: 30}).Blocks("10.244.0.0/16"); err == nil || !strings.Contains(err.Error(), "spans more than 256") {
		t.Errorf("a /16 in /30 blocks: %v, want refused", err)
	}
}

// A cluster stored before the cluster domain existed reads as the default.
func TestDecodeDefaultsTheClusterDomain(t *testing.T) {
	n, err := Decode([]byte(`{"clusterCIDR":"10.244.0.0/16","nodeCIDRMaskSize":24}`))
	if err != nil || n.Domain != DefaultClusterDomain {
		t.Fatalf("Decode: domain %q, %v; want %s", n.Domain, err, DefaultClusterDomain)
	}
	c := Default()
	c.ClusterDomain = "corp.example"
	b, _ := json.Marshal(c)
	if n, err := Decode(b); err != nil || n.Domain != "corp.example" || n.Config().ClusterDomain != "corp.example" {
		t.Fatalf("Decode round trip: %+v, %v", n, err)
	}
}
