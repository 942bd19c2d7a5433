package podcidr

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/skiffhq/skiff/controlplane"
	"github.com/skiffhq/skiff/controlplane/clusternet"
	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
)

// ReasonCIDRNotAvailable is the Warning Event on a Node left without a
// range because the cluster range is exhausted.
const ReasonCIDRNotAvailable = "CIDRNotAvailable"

// ErrRangeFull: every node-size block of the cluster range is taken.
var ErrRangeFull = errors.New("cluster pod range is full")

// Config tunes the controller.
type Config struct {
	Kit ctrlkit.Config
	// Network reads the cluster network settings at the start of each
	// leadership term (on a control node: from the store, as ctl init
	// wrote them). Nil: clusternet.Default().
	Network func(context.Context) (clusternet.Network, error)
}

// DefaultConfig: one worker (see the package doc), resync every 30 s.
func DefaultConfig(c *client.Client) Config {
	kit := ctrlkit.DefaultConfig(c)
	kit.Workers = 1
	return Config{Kit: kit}
}

// Controller is the pod range allocation loop.
type Controller struct {
	*ctrlkit.Base
	cfg   Config
	rec   *client.Recorder
	nodes *ctrlkit.Cache

	mu  sync.Mutex
	net clusternet.Network
	// full are the Nodes told that the range is exhausted (this term).
	full map[string]bool
}

// New returns the controller.
func New(cfg Config, rec *client.Recorder) *Controller {
	cfg.Kit.Workers = 1
	if rec == nil {
		rec = client.NewRecorder(cfg.Kit.Client, "podcidr-controller", "")
	}
	c := &Controller{cfg: cfg, rec: rec}
	c.Base = ctrlkit.NewBase("podcidr", cfg.Kit, c.sync)
	c.nodes = c.Watch("Node", client.EventHandler{
		OnAdd:    func(o client.Object) { c.Enqueue(o) },
		OnUpdate: func(_, o client.Object) { c.Enqueue(o) },
		// A deleted Node frees a range: Nodes waiting for one try again.
		OnDelete: func(client.Object) { c.requeueWaiting() },
	})
	return c
}

// NewLoop is the registry factory ("podcidr"); d.Configs["podcidr"] is a
// Config (its Kit's client and logger come from d).
func NewLoop(d controllers.Deps) (controlplane.Loop, error) {
	cfg, err := controllers.ConfigFor(d, "podcidr", DefaultConfig(d.Client))
	if err != nil {
		return nil, err
	}
	if cfg.Kit.Resync <= 0 {
		// Nodes left without a range by exhaustion are retried at resync.
		cfg.Kit.Resync = DefaultConfig(d.Client).Kit.Resync
	}
	cfg.Kit.Client, cfg.Kit.Informers = d.Client, d.Informers
	if d.Logger != nil {
		cfg.Kit.Logger = d.Logger
	}
	return New(cfg, d.Recorder("podcidr-controller")), nil
}

// Run reads the cluster network, then allocates until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	net, err := c.loadNetwork(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.net, c.full = net, map[string]bool{}
	c.mu.Unlock()
	c.Log.Info("allocating pod ranges", "clusterCIDR", net.Cluster, "nodeCIDRMaskSize", net.NodeBits, "ranges", net.Size())
	return c.Base.Run(ctx)
}

func (c *Controller) loadNetwork(ctx context.Context) (clusternet.Network, error) {
	if c.cfg.Network == nil {
		return clusternet.Default().Parse()
	}
	for {
		net, err := c.cfg.Network(ctx)
		if err == nil || errors.Is(err, clusternet.ErrConfig) {
			return net, err
		}
		c.Log.Warn("read the cluster network settings, retrying", "err", err)
		select {
		case <-ctx.Done():
			return net, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// requeueWaiting queues every Node still without a range.
func (c *Controller) requeueWaiting() {
	if c.nodes.Informer == nil {
		return
	}
	for _, o := range c.nodes.List() {
		if o.(*apiv1.Node).GetSpec().GetPodCIDR() == "" {
			c.Enqueue(o)
		}
	}
}

func (c *Controller) sync(ctx context.Context, key string) error {
	_, name := ctrlkit.SplitKey(key)
	obj, ok := c.nodes.Get("", name)
	if !ok {
		return nil
	}
	node := obj.(*apiv1.Node)
	if node.GetSpec().GetPodCIDR() != "" || node.GetMetadata().GetDeletionTimestamp() != "" {
		return nil
	}
	c.mu.Lock()
	net := c.net
	c.mu.Unlock()
	cidr, err := c.free(net)
	if errors.Is(err, ErrRangeFull) {
		c.mu.Lock()
		told := c.full[name]
		c.full[name] = true
		c.mu.Unlock()
		if !told {
			msg := fmt.Sprintf("Node %s has no pod range: all %d ranges of /%d in the cluster range %s are taken (delete Nodes, or create the cluster with a larger --cluster-cidr or --node-cidr-mask-size)",
				name, net.Size(), net.NodeBits, net.Cluster)
			c.Log.Warn("pod range exhausted", "node", name, "clusterCIDR", net.Cluster)
			if err := c.rec.Event(ctx, node, "Warning", ReasonCIDRNotAvailable, msg); err != nil {
				return fmt.Errorf("record %s on Node %s: %w", ReasonCIDRNotAvailable, name, err)
			}
		}
		return nil // retried when a Node goes, and at every resync
	}
	if err != nil {
		return err
	}
	next := codec.Clone(node) // carries the cached resourceVersion: a compare-and-swap
	if next.Spec == nil {
		next.Spec = &apiv1.NodeSpec{}
	}
	next.Spec.PodCIDR, next.Spec.PodCIDRs = cidr, []string{cidr}
	updated, err := client.Update(ctx, c.Client(), next)
	if err != nil {
		return fmt.Errorf("assign pod range %s to Node %s: %w", cidr, name, err)
	}
	c.nodes.Wrote(updated)
	c.mu.Lock()
	delete(c.full, name)
	c.mu.Unlock()
	c.Log.Info("assigned pod range", "node", name, "podCIDR", cidr)
	return nil
}

// free is the lowest node-size block no stored Node holds.
func (c *Controller) free(net clusternet.Network) (string, error) {
	taken := map[int]bool{}
	for _, o := range c.nodes.List() {
		cidr := o.(*apiv1.Node).GetSpec().GetPodCIDR()
		if cidr == "" {
			continue
		}
		blocks, err := net.Blocks(cidr)
		if err != nil {
			continue // outside the cluster range: takes none of it
		}
		for _, b := range blocks {
			if i, ok := net.Index(b); ok {
				taken[i] = true
			}
		}
	}
	for i := 0; i < net.Size(); i++ {
		if !taken[i] {
			return net.At(i).String(), nil
		}
	}
	return "", ErrRangeFull
}
