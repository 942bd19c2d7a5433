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

// ErrNoPodCIDR: the built-in config list has no pod range yet (the agent
// sets it with SetPodCIDR once the control plane assigned one).
var ErrNoPodCIDR = errors.New("network: this node has no pod range (PodCIDR) yet")

// ErrPodCIDRChanged: SetPodCIDR was given another range than the one this
// node's data dir already hands out addresses from.
var ErrPodCIDRChanged = errors.New("network: the pod range changed")

// podCIDRFile, in IPAMDataDir, records the built-in network's range, so a
// restarted agent tears down its pods' networks before it is told the
// range again.
const podCIDRFile = "podcidr"

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
	// NetnsDir holds the pinned pod network namespaces. Each agent has its
	// own (under its data dir): the runtime removes every namespace here
	// that belongs to none of its pods.
	NetnsDir string
	// PodCIDR is the node's pod range, e.g. "10.244.3.0/24" (built-in
	// list). Empty: the range recorded in IPAMDataDir by an earlier run,
	// else none until SetPodCIDR.
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
		NetnsDir:    "/var/lib/skiff/netns",
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
	cfg Config
	cni *libcni.CNIConfig
	// user is the user's config list; nil: the built-in lists.
	user *libcni.NetworkConfigList
	// builtin holds the built-in lists once the pod range is known.
	builtin atomic.Pointer[builtinLists]
	// setRange serialises SetPodCIDR.
	setRange sync.Mutex
	// legacyLoopback is the loopback attachment earlier versions ran as a
	// CNI plugin; Teardown still deletes it for pods that have one cached.
	legacyLoopback *libcni.NetworkConfigList
	// firstAdd serialises ADDs until one succeeded: the bridge plugin
	// creating the same bridge from parallel ADDs races; once the bridge
	// exists, ADDs run in parallel (host-local locks its own store).
	firstAdd sync.Mutex
	bridgeUp atomic.Bool
}

// builtinLists are the built-in list with portmap and without it (for
// pods without host ports).
type builtinLists struct {
	podCIDR         string
	full, noPortmap *libcni.NetworkConfigList
}

// New loads the CNI config (a user conflist from ConfDir, else the built-in
// one) and checks that the plugins it names exist. The built-in list needs
// the pod range: cfg.PodCIDR, else the one an earlier run recorded, else it
// waits for SetPodCIDR (Setup fails with ErrNoPodCIDR until then).
func New(cfg Config) (*Manager, error) {
	m := &Manager{cfg: cfg, cni: libcni.NewCNIConfigWithCacheDir(cfg.PluginDirs, cfg.CacheDir, nil)}
	user, err := m.loadUserList()
	if err != nil {
		return nil, err
	}
	m.user = user
	plugins := []string{"bridge", "host-local", "portmap"}
	if user != nil {
		plugins = plugins[:0]
		for _, p := range user.Plugins {
			plugins = append(plugins, p.Network.Type)
		}
	} else {
		if cfg.PodCIDR == "" {
			if cfg.PodCIDR, err = m.recordedPodCIDR(); err != nil {
				return nil, err
			}
		}
		if cfg.PodCIDR != "" {
			if err := m.SetPodCIDR(cfg.PodCIDR); err != nil {
				return nil, err
			}
		}
	}
	lo, err := libcni.ConfListFromBytes([]byte(`{"cniVersion":"1.0.0","name":"skiff-loopback","plugins":[{"type":"loopback"}]}`))
	if err != nil {
		return nil, fmt.Errorf("loopback config: %w", err)
	}
	m.legacyLoopback = lo
	for _, p := range plugins {
		if _, err := invoke.FindInPath(p, cfg.PluginDirs); err != nil {
			return nil, fmt.Errorf("network: CNI plugin %q of %s not in %v: %w", p, m.NetworkName(), cfg.PluginDirs, err)
		}
	}
	if cfg.IPMasq && user == nil {
		if _, err := exec.LookPath("iptables"); err != nil {
			return nil, fmt.Errorf("network: ipMasq needs the iptables binary on PATH (add /usr/sbin): %w", err)
		}
	}
	return m, nil
}

// NetworkName is the name of the config list in use.
func (m *Manager) NetworkName() string {
	if m.user != nil {
		return m.user.Name
	}
	return m.cfg.NetworkName
}

// PodCIDR is the built-in network's range ("" while none is set).
func (m *Manager) PodCIDR() string {
	if l := m.builtin.Load(); l != nil {
		return l.podCIDR
	}
	return ""
}

// SetPodCIDR gives the built-in network its range (the Node's
// spec.podCIDR) and records it in IPAMDataDir. Setting the range in use
// again is a no-op; another one is ErrPodCIDRChanged (pods here have
// addresses from the first). A user config list ignores it.
func (m *Manager) SetPodCIDR(cidr string) error {
	if m.user != nil {
		return nil
	}
	m.setRange.Lock()
	defer m.setRange.Unlock()
	if cur := m.builtin.Load(); cur != nil {
		if cur.podCIDR == cidr {
			return nil
		}
		return fmt.Errorf("%w: this node's network hands out addresses from %s (recorded in %s), not %s: remove the node's pods and %s to start over with the new range",
			ErrPodCIDRChanged, cur.podCIDR, m.cfg.IPAMDataDir, cidr, m.cfg.IPAMDataDir)
	}
	full, err := m.builtinList(cidr, true)
	if err != nil {
		return err
	}
	noPortmap, err := m.builtinList(cidr, false)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(m.cfg.IPAMDataDir, 0o700); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	if err := os.WriteFile(filepath.Join(m.cfg.IPAMDataDir, podCIDRFile), []byte(cidr+"\n"), 0o600); err != nil {
		return fmt.Errorf("network: record the pod range: %w", err)
	}
	m.builtin.Store(&builtinLists{podCIDR: cidr, full: full, noPortmap: noPortmap})
	return nil
}

// recordedPodCIDR is the range an earlier run recorded ("" if none).
func (m *Manager) recordedPodCIDR() (string, error) {
	b, err := os.ReadFile(filepath.Join(m.cfg.IPAMDataDir, podCIDRFile))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("network: read the recorded pod range: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

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
func (m *Manager) builtinList(podCIDR string, withPortmap bool) (*libcni.NetworkConfigList, error) {
	if podCIDR == "" {
		return nil, ErrNoPodCIDR
	}
	if _, _, err := net.ParseCIDR(podCIDR); err != nil {
		return nil, fmt.Errorf("network: PodCIDR %q: %w", podCIDR, err)
	}
	bridge := map[string]any{
		"type":        "bridge",
		"bridge":      m.cfg.BridgeName,
		"isGateway":   true,
		"ipMasq":      m.cfg.IPMasq,
		"hairpinMode": true,
		"ipam": map[string]any{
			"type":    "host-local",
			"ranges":  [][]map[string]string{{{"subnet": podCIDR}}},
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
func (m *Manager) listFor(ports []PortMapping) (*libcni.NetworkConfigList, error) {
	if m.user != nil {
		return m.user, nil
	}
	l := m.builtin.Load()
	if l == nil {
		return nil, ErrNoPodCIDR
	}
	if len(ports) == 0 {
		return l.noPortmap, nil
	}
	return l.full, nil
}

// Setup runs the network list on eth0 of pod id's namespace (loopback is
// already up, see CreateNetns). On failure it undoes what it did.
func (m *Manager) Setup(ctx context.Context, id, netns string, ports []PortMapping) (*Attachment, error) {
	rt := m.runtimeConf(id, netns, "eth0", ports)
	if !m.bridgeUp.Load() {
		m.firstAdd.Lock()
		defer m.firstAdd.Unlock()
	}
	list, err := m.listFor(ports)
	if err != nil {
		return nil, fmt.Errorf("set up the network of pod %s: %w", id, err)
	}
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
	list, err := m.listFor(ports)
	if errors.Is(err, ErrNoPodCIDR) {
		// No range was ever set in this data dir: no pod got an address
		// here, there is nothing for CNI to release.
		return nil
	}
	if err != nil {
		return err
	}
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
