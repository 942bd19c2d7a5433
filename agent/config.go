package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiffhq/skiff/agent/runtime"
	"github.com/skiffhq/skiff/proto/client"
)

// PodRuntime is what the agent needs from agent/runtime.
type PodRuntime interface {
	RunPod(ctx context.Context, pod *runtime.Pod) error
	StopPod(ctx context.Context, uid string, grace *time.Duration) error
	RemovePod(ctx context.Context, uid string) error
	PodStatus(uid string) (runtime.PodStatus, error)
	ListPods() []runtime.PodStatus
}

// ServiceProxy is what the agent feeds Services into (netproxy.Proxy
// through netproxy/apifeed); nil runs no proxy.
type ServiceProxy interface {
	Run(ctx context.Context) error
}

// Config of an Agent. Start from DefaultConfig.
type Config struct {
	// NodeName is this node's Node object name (and the certificate's).
	NodeName string
	// Registerer, when set, takes the agent's metrics (metrics.go).
	Registerer prometheus.Registerer
	// Client talks to the cluster API with the node's certificate.
	Client *client.Client
	// Runtime runs the pods (runtime.Runtime).
	Runtime PodRuntime
	// PodCIDR, when set, is the range this node expects (ctl agent
	// --pod-cidr): the control plane assigns the range (Node
	// spec.podCIDR) and the agent stops with ErrPodCIDRMismatch if it is
	// another. The agent never writes spec.podCIDR.
	PodCIDR string
	// PodNetwork, when set, is given the assigned range before any pod
	// starts (network.Manager: the built-in bridge's host-local range).
	PodNetwork PodNetwork
	// NodeIP is the node's InternalIP address (status.hostIP of its pods).
	NodeIP netip.Addr
	// VolumeDir is where the local volumes provisioned for this node live
	// (<data-dir>/volumes), one directory per volume; the Node's
	// skiff.io/local-volume-dir annotation tells the provisioner. Empty:
	// no provisioned volume is mounted here.
	VolumeDir string
	// VolumeGCInterval between the volume GC's safety-net sweeps: it
	// removes the directories of deleted volumes as their watch events
	// come (volumegc.go), this catches what an event could not do.
	VolumeGCInterval time.Duration
	// VolumeRefreshInterval is how often running pods' ConfigMap, Secret,
	// downwardAPI and projected volumes are converted afresh (a changed
	// object shows in the pod within it; a service account token is
	// replaced at 80 % of its lifetime, or when less than two of these
	// are left). Zero: 20 s.
	VolumeRefreshInterval time.Duration
	// StreamPort is the port of the node's stream server (agent/streams),
	// published in status.daemonEndpoints.kubeletEndpoint for the API
	// server to dial at NodeIP; 0 publishes none.
	StreamPort int
	// Labels are added to the Node's (kubernetes.io/hostname, os and arch
	// are always set).
	Labels map[string]string
	// Capacity overrides what the machine reports (cpu, memory, pods …);
	// Allocatable is Capacity minus Reserved.
	Capacity map[string]string
	Reserved map[string]string
	// HeartbeatInterval between renewals of the node's Lease
	// (kube-node-lease/<node>). The node lifecycle controller marks a node
	// Unknown after three missed (nodelifecycle.DefaultConfig's GracePeriod).
	HeartbeatInterval time.Duration
	// StatusReportInterval: the Node's status is written when it changes
	// (or the controller marked it Unknown) and otherwise this often
	// (Kubernetes' nodeStatusReportFrequency): status writes reach every
	// Node watcher, lease renewals only the node lifecycle controller.
	StatusReportInterval time.Duration
	// SyncInterval between full passes over this node's pods (status,
	// retries, orphans); changes from the API are acted on at once.
	SyncInterval time.Duration
	// UsageInterval between the node's usage reports (its NodeMetrics:
	// CPU and memory of the node and of each pod, from cgroups); 0 or less:
	// none. 15 s, as metrics-server's resolution: the HPA acts on it.
	UsageInterval time.Duration
	// Proxy, when set, runs beside the pod loop (the Service data path).
	Proxy ServiceProxy
	// ClusterDNS, when set, tells the cluster DNS pods query (dnsPolicy
	// ClusterFirst); nil: pods get the node's resolv.conf.
	ClusterDNS ClusterDNSSource
	// ResolvConf is the node's resolv.conf (dnsPolicy Default, and the
	// search paths ClusterFirst adds); empty: none.
	ResolvConf string
	// Images, when set, is garbage-collected every ImageGCInterval: images
	// no pod on this node uses are removed (the runtime must report the
	// images in use).
	Images          ImageCollector
	ImageGCInterval time.Duration
	Logger          *slog.Logger
}

// DefaultConfig: lease renewals every 2 s, three inside the node lifecycle
// controller's 6 s grace; the full status every minute.
func DefaultConfig() Config {
	return Config{HeartbeatInterval: 2 * time.Second, StatusReportInterval: time.Minute, SyncInterval: time.Second, ImageGCInterval: 5 * time.Minute, VolumeGCInterval: 5 * time.Minute, UsageInterval: 15 * time.Second,
		Capacity: map[string]string{}, Reserved: map[string]string{}}
}

// ErrConfig wraps configuration errors.
var ErrConfig = errors.New("agent config")

func (c *Config) validate() error {
	d := DefaultConfig()
	switch {
	case c.NodeName == "":
		return fmt.Errorf("%w: NodeName is required", ErrConfig)
	case c.Client == nil:
		return fmt.Errorf("%w: Client is required", ErrConfig)
	case c.Runtime == nil:
		return fmt.Errorf("%w: Runtime is required", ErrConfig)
	case c.Images != nil && !implementsImagesInUse(c.Runtime):
		return fmt.Errorf("%w: image GC needs a Runtime that reports the images in use", ErrConfig)
	}
	if c.PodCIDR != "" {
		if _, err := netip.ParsePrefix(c.PodCIDR); err != nil {
			return fmt.Errorf("%w: PodCIDR %q: %v", ErrConfig, c.PodCIDR, err)
		}
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = d.HeartbeatInterval
	}
	if c.StatusReportInterval <= 0 {
		c.StatusReportInterval = d.StatusReportInterval
	}
	if c.SyncInterval <= 0 {
		c.SyncInterval = d.SyncInterval
	}
	if c.ImageGCInterval <= 0 {
		c.ImageGCInterval = d.ImageGCInterval
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}
