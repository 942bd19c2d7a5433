package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrNoPodCIDR is returned when the built-in config list is used without a
// pod CIDR to allocate from.
var ErrNoPodCIDR = errors.New("network: PodCIDR is required for the built-in CNI config")

// Config says where CNI plugins, configs and state live.
type Config struct {
	// PluginDirs are searched in order for plugin binaries.
	PluginDirs []string
	// ConfDir may hold a *.conflist that replaces the built-in list. Empty:
	// always use the built-in list.
	ConfDir string
	// CacheDir is libcni's result cache (needed for DEL after a restart).
	CacheDir string
	// IPAMDataDir is host-local's allocation store (built-in list only).
	IPAMDataDir string
	// NetnsDir holds the pinned pod network namespaces.
	NetnsDir string
	// PodCIDR is the node's pod range, e.g. "10.244.3.0/24" (built-in list).
	PodCIDR string
	// BridgeName is the Linux bridge of the built-in list.
	BridgeName string
	// NetworkName names the built-in network (and host-local's data subdir).
	NetworkName string
	// IPMasq masquerades pod traffic leaving the pod CIDR (needs iptables on PATH).
	IPMasq bool
	// MTU of the pod interfaces; 0 leaves the plugin default.
	MTU int
}

// DefaultConfig is the layout on a node.
func DefaultConfig() Config {
	return Config{
		PluginDirs:  []string{"/usr/lib/cni", "/opt/cni/bin"},
		ConfDir:     "/etc/skiff/cni/net.d",
		CacheDir:    "/var/lib/skiff/cni/cache",
		IPAMDataDir: "/var/lib/skiff/cni/networks",
		NetnsDir:    "/run/skiff/netns",
		BridgeName:  "skiff0",
		NetworkName: "skiff",
		IPMasq:      true,
	}
}

// PortMapping is a hostPort of a container, handed to the portmap plugin.
type PortMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"` // "tcp" or "udp"
	HostIP        string `json:"hostIP,omitempty"`
}

// Attachment is what a pod got from CNI.
type Attachment struct {
	IP      net.IP
	Gateway net.IP
}

// Manager calls CNI plugins for pod sandboxes. It is safe for concurrent use.
type Manager struct {
	cfg  Config
	cni  *libcni.CNIConfig
	list *libcni.NetworkConfigList
	// noPortmap is the built-in list without portmap, for pods without
	// host ports (nil for a user list, which always runs as written).
	noPortmap *libcni.NetworkConfigList
	// legacyLoopback is the loopback attachment earlier versions ran as a
	// CNI plugin; Teardown still deletes it for pods that have one cached.
	legacyLoopback *libcni.NetworkConfigList
	// firstAdd serialises ADDs until one succeeded: the bridge plugin
	// creating the same bridge from parallel ADDs races; once the bridge
	// exists, ADDs run in parallel (host-local locks its own store).
	firstAdd sync.Mutex
	bridgeUp atomic.Bool
}

// New loads the CNI config (a user conflist from ConfDir, else the built-in
// one) and checks that the plugins it names exist.
func New(cfg Config) (*Manager, error) {
	m := &Manager{cfg: cfg, cni: libcni.NewCNIConfigWithCacheDir(cfg.PluginDirs, cfg.CacheDir, nil)}
	list, err := m.loadUserList()
	if err != nil {
		return nil, err
	}
	if list == nil {
		if list, err = m.builtinList(true); err != nil {
			return nil, err
		}
		if m.noPortmap, err = m.builtinList(false); err != nil {
			return nil, err
		}
	}
	m.list = list
	lo, err := libcni.ConfListFromBytes([]byte(`{"cniVersion":"1.0.0","name":"skiff-loopback","plugins":[{"type":"loopback"}]}`))
	if err != nil {
		return nil, fmt.Errorf("loopback config: %w", err)
	}
	m.legacyLoopback = lo
	for _, p := range m.list.Plugins {
		if _, err := invoke.FindInPath(p.Network.Type, cfg.PluginDirs); err != nil {
			return nil, fmt.Errorf("network: CNI plugin %q of %s not in %v: %w", p.Network.Type, m.list.Name, cfg.PluginDirs, err)
		}
	}
	if cfg.IPMasq && list.Name == cfg.NetworkName {
		if _, err := exec.LookPath("iptables"); err != nil {
			return nil, fmt.Errorf("network: ipMasq needs the iptables binary on PATH (add /usr/sbin): %w", err)
		}
	}
	return m, nil
}

// NetworkName is the name of the config list in use.
func (m *Manager) NetworkName() string { return m.list.Name }

func (m *Manager) loadUserList() (*libcni.NetworkConfigList, error) {
	if m.cfg.ConfDir == "" {
		return nil, nil
	}
	files, err := libcni.ConfFiles(m.cfg.ConfDir, []string{".conflist"})
	if err != nil {
		return nil, fmt.Errorf("network: read CNI config dir %s: %w", m.cfg.ConfDir, err)
	}
	if len(files) == 0 {
		return nil, nil
	}
	sort.Strings(files)
	l, err := libcni.ConfListFromFile(files[0])
	if err != nil {
		return nil, fmt.Errorf("network: CNI config %s: %w", files[0], err)
	}
	return l, nil
}

// builtinList is bridge + host-local, and portmap if withPortmap. Both
// variants share the network name, so libcni's result cache (and with it
// DEL after an agent restart) is the same for either.
func (m *Manager) builtinList(withPortmap bool) (*libcni.NetworkConfigList, error) {
	if m.cfg.PodCIDR == "" {
		return nil, ErrNoPodCIDR
	}
	if _, _, err := net.ParseCIDR(m.cfg.PodCIDR); err != nil {
		return nil, fmt.Errorf("network: PodCIDR %q: %w", m.cfg.PodCIDR, err)
	}
	bridge := map[string]any{
		"type":        "bridge",
		"bridge":      m.cfg.BridgeName,
		"isGateway":   true,
		"ipMasq":      m.cfg.IPMasq,
		"hairpinMode": true,
		"ipam": map[string]any{
			"type":    "host-local",
			"ranges":  [][]map[string]string{{{"subnet": m.cfg.PodCIDR}}},
			"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
			"dataDir": m.cfg.IPAMDataDir,
		},
	}
	if m.cfg.MTU > 0 {
		bridge["mtu"] = m.cfg.MTU
	}
	plugins := []any{bridge}
	if withPortmap {
		plugins = append(plugins, map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}, "snat": true})
	}
	conf := map[string]any{"cniVersion": "1.0.0", "name": m.cfg.NetworkName, "plugins": plugins}
	b, err := json.Marshal(conf)
	if err != nil {
		return nil, err
	}
	l, err := libcni.ConfListFromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("network: built-in config: %w", err)
	}
	return l, nil
}

// NetnsPath is where the network namespace of pod id is pinned.
func (m *Manager) NetnsPath(id string) string { return filepath.Join(m.cfg.NetnsDir, id) }

// CreateNetns creates and pins a fresh network namespace for pod id, with
// its loopback interface up.
//
// Loopback is brought up here, on the thread that is already inside the new
// namespace, instead of through the CNI loopback plugin: that plugin only
// sets lo up (and down on DEL, moot for a namespace about to be destroyed),
// holds no state, and exec'ing it cost a process start and a libcni round
// trip on every pod start and stop. User config lists are not affected:
// they configure eth0, and loopback was never part of them.
func (m *Manager) CreateNetns(id string) (string, error) {
	p := m.NetnsPath(id)
	return p, CreateNamespaceFile(p, unix.CLONE_NEWNET, loopbackUp)
}

// loopbackUp sets lo up in the calling thread's network namespace (the
// kernel then gives it 127.0.0.1 and ::1).
func loopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	return nil
}

// DeleteNetns removes the pinned namespace of pod id (missing is fine).
func (m *Manager) DeleteNetns(id string) error { return DeleteNamespaceFile(m.NetnsPath(id)) }

// ListNetns returns the pod ids that have a pinned namespace.
func (m *Manager) ListNetns() ([]string, error) {
	ents, err := os.ReadDir(m.cfg.NetnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("network: list netns: %w", err)
	}
	var ids []string
	for _, e := range ents {
		ids = append(ids, e.Name())
	}
	return ids, nil
}

func (m *Manager) runtimeConf(id, netns, ifname string, ports []PortMapping) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{ContainerID: id, NetNS: netns, IfName: ifname}
	if len(ports) > 0 {
		pm := make([]PortMapping, len(ports))
		for i, p := range ports {
			pm[i] = p
			pm[i].Protocol = strings.ToLower(p.Protocol)
			if pm[i].Protocol == "" {
				pm[i].Protocol = "tcp"
			}
		}
		rt.CapabilityArgs = map[string]any{"portMappings": pm}
	}
	return rt
}

// listFor is the config list for a pod with these host ports. The built-in
// list leaves portmap out when there are none: without portMappings the
// plugin's ADD only passes the previous result through and its DEL returns
// at once, so running it would cost a process start for nothing.
func (m *Manager) listFor(ports []PortMapping) *libcni.NetworkConfigList {
	if len(ports) == 0 && m.noPortmap != nil {
		return m.noPortmap
	}
	return m.list
}

// Setup runs the network list on eth0 of pod id's namespace (loopback is
// already up, see CreateNetns). On failure it undoes what it did.
func (m *Manager) Setup(ctx context.Context, id, netns string, ports []PortMapping) (*Attachment, error) {
	rt := m.runtimeConf(id, netns, "eth0", ports)
	if !m.bridgeUp.Load() {
		m.firstAdd.Lock()
		defer m.firstAdd.Unlock()
	}
	list := m.listFor(ports)
	res, err := m.cni.AddNetworkList(ctx, list, rt)
	if err == nil {
		m.bridgeUp.Store(true)
	}
	if err != nil {
		_ = m.cni.DelNetworkList(ctx, list, rt)
		return nil, fmt.Errorf("network: CNI ADD %s for %s: %w", list.Name, id, err)
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("network: CNI result for %s: %w", id, err)
	}
	att := &Attachment{}
	for _, ip := range r.IPs {
		if ip.Address.IP.To4() != nil || att.IP == nil {
			att.IP, att.Gateway = ip.Address.IP, ip.Gateway
		}
	}
	return att, nil
}

// Teardown runs CNI DEL for pod id (the namespace may already be gone).
func (m *Manager) Teardown(ctx context.Context, id, netns string, ports []PortMapping) error {
	if _, err := os.Stat(netns); err != nil {
		netns = "" // plugins must release IPAM even without the namespace
	}
	list := m.listFor(ports)
	if err := m.cni.DelNetworkList(ctx, list, m.runtimeConf(id, netns, "eth0", ports)); err != nil {
		return fmt.Errorf("network: CNI DEL %s for %s: %w", list.Name, id, err)
	}
	// Pods set up by an agent that still ran the loopback plugin have its
	// result cached: DEL it so the cache entry goes too.
	lo := m.runtimeConf(id, netns, "lo", nil)
	if cached, err := m.cni.GetNetworkListCachedResult(m.legacyLoopback, lo); err == nil && cached != nil {
		if err := m.cni.DelNetworkList(ctx, m.legacyLoopback, lo); err != nil && netns != "" {
			return fmt.Errorf("network: loopback DEL for %s: %w", id, err)
		}
	}
	return nil
}

// Allocations lists the addresses host-local holds in the built-in network
// (empty for a user config list). Used to check for leaks.
func (m *Manager) Allocations() ([]string, error) {
	dir := filepath.Join(m.cfg.IPAMDataDir, m.cfg.NetworkName)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ips []string
	for _, e := range ents {
		if net.ParseIP(e.Name()) != nil {
			ips = append(ips, e.Name())
		}
	}
	return ips, nil
}
