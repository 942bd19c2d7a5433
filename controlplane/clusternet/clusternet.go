package clusternet

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// Store keys (outside /registry/, so the API never serves them).
const (
	// StoreKey holds the JSON Config.
	StoreKey = "/skiff/cluster-network"
	// ClaimPrefix + a node-size block ("10.244.3.0/24") names the Node
	// holding that block.
	ClaimPrefix = "/skiff/podcidr-claims/"
)

// MaxBlocksPerNode bounds how many node-size blocks one podCIDR may span
// (an admin may give a Node a larger range than the default size).
const MaxBlocksPerNode = 256

// ErrConfig: the cluster network settings are unusable.
var ErrConfig = errors.New("cluster network")

// Config is the stored form.
type Config struct {
	// ClusterCIDR is the range of every pod address, e.g. "10.244.0.0/16".
	ClusterCIDR string `json:"clusterCIDR"`
	// NodeCIDRMaskSize is the prefix length of each Node's range, e.g. 24.
	NodeCIDRMaskSize int `json:"nodeCIDRMaskSize"`
	// ClusterDomain is the DNS domain of the cluster's names
	// (<svc>.<ns>.svc.<domain>); empty in a cluster stored before it
	// existed, which means DefaultClusterDomain.
	ClusterDomain string `json:"clusterDomain,omitempty"`
}

// DefaultClusterDomain is Kubernetes' default cluster domain.
const DefaultClusterDomain = "cluster.local"

// domainRe is a lower-case DNS-1123 subdomain.
var domainRe = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// Default is 10.244.0.0/16 in /24s (flannel's and kubeadm's usual choice):
// 256 Nodes of 254 pods.
func Default() Config {
	return Config{ClusterCIDR: "10.244.0.0/16", NodeCIDRMaskSize: 24, ClusterDomain: DefaultClusterDomain}
}

// Network is a checked Config.
type Network struct {
	Cluster  netip.Prefix
	NodeBits int
	// Domain is the cluster DNS domain (no trailing dot).
	Domain string
}

// Parse checks c: an IPv4 range, and a node size inside it leaving at
// least two usable addresses per Node.
func (c Config) Parse() (Network, error) {
	p, err := netip.ParsePrefix(c.ClusterCIDR)
	if err != nil {
		return Network{}, fmt.Errorf("%w: cluster CIDR %q: %v", ErrConfig, c.ClusterCIDR, err)
	}
	if !p.Addr().Is4() {
		return Network{}, fmt.Errorf("%w: cluster CIDR %q: only IPv4 pod ranges are supported", ErrConfig, c.ClusterCIDR)
	}
	if p.Masked() != p {
		return Network{}, fmt.Errorf("%w: cluster CIDR %q has host bits set (did you mean %s?)", ErrConfig, c.ClusterCIDR, p.Masked())
	}
	if c.NodeCIDRMaskSize < p.Bits() || c.NodeCIDRMaskSize > 30 {
		return Network{}, fmt.Errorf("%w: node CIDR mask size %d: must be between the cluster CIDR's /%d and /30", ErrConfig, c.NodeCIDRMaskSize, p.Bits())
	}
	if c.NodeCIDRMaskSize-p.Bits() > 24 {
		return Network{}, fmt.Errorf("%w: node CIDR mask size %d splits %s into more than 2^24 node ranges", ErrConfig, c.NodeCIDRMaskSize, p)
	}
	domain := strings.TrimSuffix(c.ClusterDomain, ".")
	if domain == "" {
		domain = DefaultClusterDomain
	}
	if len(domain) > 253 || !domainRe.MatchString(domain) {
		return Network{}, fmt.Errorf("%w: cluster domain %q: want a lower-case DNS name such as %s", ErrConfig, c.ClusterDomain, DefaultClusterDomain)
	}
	return Network{Cluster: p, NodeBits: c.NodeCIDRMaskSize, Domain: domain}, nil
}

// Decode reads a stored Config; an empty value is Default.
func Decode(b []byte) (Network, error) {
	c := Default()
	if len(b) > 0 {
		if err := json.Unmarshal(b, &c); err != nil {
			return Network{}, fmt.Errorf("%w: stored %s: %v", ErrConfig, StoreKey, err)
		}
	}
	return c.Parse()
}

// Config is n in its stored form.
func (n Network) Config() Config {
	return Config{ClusterCIDR: n.Cluster.String(), NodeCIDRMaskSize: n.NodeBits, ClusterDomain: n.Domain}
}

// Size is how many node ranges the cluster range holds.
func (n Network) Size() int { return 1 << (n.NodeBits - n.Cluster.Bits()) }

// At is the i-th node range (0 ≤ i < Size).
func (n Network) At(i int) netip.Prefix {
	base := binary.BigEndian.Uint32(n.Cluster.Addr().AsSlice())
	a := base + uint32(i)<<(32-n.NodeBits)
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), n.NodeBits)
}

// Index is the position of a node-size block in the cluster range.
func (n Network) Index(block netip.Prefix) (int, bool) {
	if block.Bits() != n.NodeBits || !n.Cluster.Contains(block.Addr()) || block.Masked() != block {
		return 0, false
	}
	off := binary.BigEndian.Uint32(block.Addr().AsSlice()) - binary.BigEndian.Uint32(n.Cluster.Addr().AsSlice())
	return int(off >> (32 - n.NodeBits)), true
}

// Blocks lists the node-size blocks a podCIDR takes: the blocks inside it
// when it is the node size or larger, the one block holding it when it is
// smaller (a smaller range still takes its whole block, so claims stay one
// size). The error says why cidr is not a range of this cluster.
func (n Network) Blocks(cidr string) ([]netip.Prefix, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, fmt.Errorf("not a CIDR: %v", err)
	}
	if p.Masked() != p {
		return nil, fmt.Errorf("has host bits set (did you mean %s?)", p.Masked())
	}
	if !p.Addr().Is4() || p.Bits() < n.Cluster.Bits() || !n.Cluster.Contains(p.Addr()) {
		return nil, fmt.Errorf("is not inside the cluster range %s", n.Cluster)
	}
	if p.Bits() > 30 {
		return nil, fmt.Errorf("is too small for pods (at most /30)")
	}
	if p.Bits() >= n.NodeBits {
		b, _ := p.Addr().Prefix(n.NodeBits)
		return []netip.Prefix{b}, nil
	}
	if p.Bits() < n.NodeBits && n.NodeBits-p.Bits() > 8 {
		return nil, fmt.Errorf("spans more than %d node ranges of /%d", MaxBlocksPerNode, n.NodeBits)
	}
	first, _ := n.Index(netip.PrefixFrom(p.Addr(), n.NodeBits))
	out := make([]netip.Prefix, 0, 1<<(n.NodeBits-p.Bits()))
	for i := 0; i < 1<<(n.NodeBits-p.Bits()); i++ {
		out = append(out, n.At(first+i))
	}
	return out, nil
}

// ClaimKey is the store key claiming block.
func ClaimKey(block netip.Prefix) string { return ClaimPrefix + block.String() }

// Marshal is c's stored form.
func (c Config) Marshal() ([]byte, error) { return json.Marshal(c) }

// Getter reads one store key (consensus.Store does).
type Getter interface {
	Get(ctx context.Context, key []byte) (*storepb.KeyValue, int64, error)
}

// Load reads the stored settings: Default when the store holds none (a
// cluster created before they were stored).
func Load(ctx context.Context, g Getter) (Network, error) {
	kv, _, err := g.Get(ctx, []byte(StoreKey))
	if err != nil {
		return Network{}, fmt.Errorf("read %s: %w", StoreKey, err)
	}
	var v []byte
	if kv != nil {
		v = kv.Value
	}
	return Decode(v)
}
