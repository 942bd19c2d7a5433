package serviceip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiffhq/skiff/controlplane"
	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/ctrlkit"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
)

var errBadConfig = errors.New("serviceip config")

// ErrRangeFull: no free address or port is left.
var ErrRangeFull = errors.New("range is full")

// Labels and data keys of allocation records.
const (
	LabelAllocation = "skiff.dev/allocation" // "clusterip" or "nodeport"
	dataService     = "service"              // namespace/name
	dataUID         = "uid"                  // the Service's uid
	// dataForVersion is the Service's resourceVersion the record was made
	// (or last re-claimed) for: the Service update that writes the value is
	// conditional on it, so once the Service has moved past it without
	// using the value, that update can no longer land and the record may go.
	dataForVersion = "serviceResourceVersion"
)

// Config tunes the allocator.
type Config struct {
	ServiceCIDR              string
	NodePortMin, NodePortMax int32
	// RecordNamespace holds the allocation records.
	RecordNamespace string
	// OrphanGrace: a record whose Service does not use it is deleted only
	// after this age (the Service update may still be in flight).
	OrphanGrace time.Duration
	// GCPeriod is how often records are checked for orphans.
	GCPeriod time.Duration
	Workers  int
	Logger   *slog.Logger
	// Informers, when set, shares informers with the other leader loops.
	Informers *client.InformerFactory
	// Registerer, when set, takes the loop's queue and reconcile metrics.
	Registerer prometheus.Registerer
	// Reserved are ClusterIPs never handed out, by address, with the one
	// Service (namespace/name) that may claim each by naming it in
	// spec.clusterIP: the kubernetes and cluster DNS Services'.
	Reserved map[string]string
}

// DefaultConfig: 10.96.0.0/12, ports 30000–32767 (Kubernetes' defaults).
func DefaultConfig() Config {
	return Config{ServiceCIDR: "10.96.0.0/12", NodePortMin: 30000, NodePortMax: 32767, RecordNamespace: "kube-system",
		OrphanGrace: 30 * time.Second, GCPeriod: 10 * time.Second, Workers: 4, Logger: slog.Default(),
		Reserved: maps.Clone(kinds.ReservedClusterIPs)}
}

// Controller is the allocation loop, on ctrlkit.Base: the main queue
// allocates per Service, a second queue collects records.
type Controller struct {
	*ctrlkit.Base
	cfg               Config
	c                 *client.Client
	rec               *client.Recorder
	ips               *ipRange
	services, records *ctrlkit.Cache
	gc                *ctrlkit.WorkQueue
	t                 *term // this leadership term's state (OnStart)
}

// New checks cfg and returns the controller.
func New(c *client.Client, rec *client.Recorder, cfg Config) (*Controller, error) {
	def := DefaultConfig()
	if cfg.ServiceCIDR == "" {
		cfg.ServiceCIDR = def.ServiceCIDR
	}
	if cfg.NodePortMin == 0 && cfg.NodePortMax == 0 {
		cfg.NodePortMin, cfg.NodePortMax = def.NodePortMin, def.NodePortMax
	}
	if cfg.NodePortMin < 1 || cfg.NodePortMax > 65535 || cfg.NodePortMin > cfg.NodePortMax {
		return nil, fmt.Errorf("%w: node port range %d-%d", errBadConfig, cfg.NodePortMin, cfg.NodePortMax)
	}
	if cfg.RecordNamespace == "" {
		cfg.RecordNamespace = def.RecordNamespace
	}
	if cfg.OrphanGrace <= 0 {
		cfg.OrphanGrace = def.OrphanGrace
	}
	if cfg.GCPeriod <= 0 {
		cfg.GCPeriod = def.GCPeriod
	}
	if cfg.Workers <= 0 {
		cfg.Workers = def.Workers
	}
	if cfg.Logger == nil {
		cfg.Logger = def.Logger
	}
	if cfg.Reserved == nil {
		cfg.Reserved = def.Reserved
	}
	ips, err := parseRange(cfg.ServiceCIDR)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		rec = client.NewRecorder(c, "ipallocator", "")
	}
	ctl := &Controller{cfg: cfg, c: c, rec: rec, ips: ips}
	ctl.Base = ctrlkit.NewBase("serviceip", ctrlkit.Config{Client: c, Logger: cfg.Logger, Workers: cfg.Workers,
		RetryBase: 100 * time.Millisecond, RetryMax: 5 * time.Second, Informers: cfg.Informers, Registerer: cfg.Registerer}, ctl.syncService)
	ctl.gc = ctl.AddQueue("collect", 1, 100*time.Millisecond, 5*time.Second, ctl.collect)
	ctl.OnStart(func() {
		ctl.t = &term{c: ctl, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7)),
			records: map[string]*record{}, claimed: map[string]bool{}, gone: map[string]bool{}}
	})
	ctl.services = ctl.Watch("Service", client.EventHandler{
		OnAdd:    func(o client.Object) { ctl.Enqueue(o) },
		OnUpdate: func(_, o client.Object) { ctl.Enqueue(o) },
		OnDelete: func(o client.Object) {
			t := ctl.t
			uid := o.GetMetadata().GetUid()
			t.mu.Lock()
			t.gone[uid] = true
			var names []string
			for _, r := range t.records {
				if r.owner == uid {
					names = append(names, r.name)
				}
			}
			t.mu.Unlock()
			for _, n := range names {
				ctl.gc.Add(n)
			}
		},
	})
	// Base waits for every cache's first list before any worker starts:
	// no Service is looked at before every existing allocation is known.
	ctl.records = ctl.WatchWith("ConfigMap", client.ListOptions{Namespace: cfg.RecordNamespace, LabelSelector: LabelAllocation}, client.EventHandler{
		OnAdd:    func(o client.Object) { ctl.t.setRecord(o.(*apiv1.ConfigMap)) },
		OnUpdate: func(_, o client.Object) { ctl.t.setRecord(o.(*apiv1.ConfigMap)) },
		OnDelete: func(o client.Object) {
			ctl.t.mu.Lock()
			delete(ctl.t.records, o.GetMetadata().GetName())
			ctl.t.mu.Unlock()
		},
	})
	ctl.Every("collect all", cfg.GCPeriod, func(context.Context) {
		t := ctl.t
		t.mu.Lock()
		names := make([]string, 0, len(t.records))
		for n := range t.records {
			names = append(names, n)
		}
		t.mu.Unlock()
		for _, n := range names {
			ctl.gc.Add(n)
		}
	})
	return ctl, nil
}

// NewLoop is the registry factory ("serviceip").
func NewLoop(d controllers.Deps) (controlplane.Loop, error) {
	cfg, err := controllers.ConfigFor(d, "serviceip", DefaultConfig())
	if err != nil {
		return nil, err
	}
	cfg.Logger, cfg.Informers, cfg.Registerer = d.Logger, d.Informers, d.Registerer
	return New(d.Client, d.Recorder("ipallocator"), cfg)
}

// record is an allocation record as cached.
type record struct {
	name, service, owner, uid string
	// rv is the record's own resourceVersion; forRV its dataForVersion
	// (0 for records written before it existed).
	rv      string
	forRV   int64
	created time.Time
}

// term is one leadership term's state.
type term struct {
	c   *Controller
	rng *rand.Rand

	mu      sync.Mutex
	records map[string]*record // by record name
	// claimed are record names being created by a worker right now.
	claimed map[string]bool
	// gone are uids of Services seen deleted: their records go at once.
	gone map[string]bool
}

func clusterIPRecord(ip string) string { return "clusterip-" + ip }
func nodePortRecord(p int32) string    { return "nodeport-" + strconv.Itoa(int(p)) }

func (t *term) setRecord(cm *apiv1.ConfigMap) {
	created, err := time.Parse(time.RFC3339, cm.GetMetadata().GetCreationTimestamp())
	if err != nil {
		created = time.Now()
	}
	t.mu.Lock()
	t.records[cm.GetMetadata().GetName()] = &record{name: cm.GetMetadata().GetName(), service: cm.GetData()[dataService],
		owner: cm.GetData()[dataUID], uid: cm.GetMetadata().GetUid(), rv: cm.GetMetadata().GetResourceVersion(),
		forRV: client.Revision(cm.GetData()[dataForVersion]), created: created}
	t.mu.Unlock()
}

// wants lists what a Service should hold: its ClusterIP ("" to allocate,
// "-" for none) and its node ports (0 to allocate) by port index.
func wants(s *apiv1.Service) (ip string, nodePorts map[int]int32) {
	sp := s.GetSpec()
	ip = sp.GetClusterIP()
	if sp.GetType() == "ExternalName" || ip == "None" {
		ip = "-"
	}
	if sp.GetType() == "NodePort" || sp.GetType() == "LoadBalancer" {
		nodePorts = map[int]int32{}
		for i, p := range sp.GetPorts() {
			nodePorts[i] = p.GetNodePort()
		}
	}
	return ip, nodePorts
}

// syncService makes one Service hold its allocations.
func (c *Controller) syncService(ctx context.Context, key string) error {
	t := c.t
	ns, name, _ := strings.Cut(key, "/")
	obj, ok := c.services.Get(ns, name)
	if !ok {
		return nil
	}
	svc := obj.(*apiv1.Service)
	if svc.GetMetadata().GetDeletionTimestamp() != "" {
		return nil
	}
	ip, ports := wants(svc)
	next := codec.Clone(svc)
	changed := false
	switch {
	case ip == "-":
	case ip == "":
		got, err := t.allocate(ctx, svc, "clusterip", func(r *record) bool { return true })
		if err != nil {
			return err
		}
		next.Spec.ClusterIP, next.Spec.ClusterIPs = got, []string{got}
		changed = true
	default:
		a, err := netip.ParseAddr(ip)
		if owner, ok := t.c.cfg.Reserved[ip]; ok && owner != client.Key(svc) {
			t.warn(ctx, svc, "ClusterIPReserved", fmt.Sprintf("spec.clusterIP %s is reserved for the Service %s: the Service stays unallocated", ip, owner))
		} else if err != nil || !t.c.ips.contains(a) {
			t.warn(ctx, svc, "ClusterIPOutOfRange", fmt.Sprintf("spec.clusterIP %s is not in the service CIDR %s: the Service stays unallocated", ip, t.c.cfg.ServiceCIDR))
		} else if err := t.claim(ctx, svc, clusterIPRecord(a.String()), "clusterip"); err != nil {
			if !errors.Is(err, errTaken) {
				return err
			}
			t.warn(ctx, svc, "ClusterIPAlreadyAllocated", fmt.Sprintf("spec.clusterIP %s is already allocated to another Service: the Service stays unallocated", ip))
		}
	}
	for i := 0; i < len(ports); i++ {
		p := ports[i]
		if p != 0 {
			if p < t.c.cfg.NodePortMin || p > t.c.cfg.NodePortMax {
				t.warn(ctx, svc, "NodePortOutOfRange", fmt.Sprintf("spec.ports[%d].nodePort %d is outside %d-%d: it stays unallocated", i, p, t.c.cfg.NodePortMin, t.c.cfg.NodePortMax))
				continue
			}
			if err := t.claim(ctx, svc, nodePortRecord(p), "nodeport"); err != nil {
				if !errors.Is(err, errTaken) {
					return err
				}
				t.warn(ctx, svc, "PortAlreadyAllocated", fmt.Sprintf("spec.ports[%d].nodePort %d is already allocated to another Service: it stays unallocated", i, p))
			}
			continue
		}
		inUse := map[string]bool{}
		for _, q := range next.Spec.Ports {
			if q.GetNodePort() != 0 {
				inUse[nodePortRecord(q.GetNodePort())] = true
			}
		}
		got, err := t.allocate(ctx, svc, "nodeport", func(r *record) bool { return !inUse[r.name] })
		if err != nil {
			return err
		}
		n, _ := strconv.Atoi(strings.TrimPrefix(got, "nodeport-"))
		next.Spec.Ports[i].NodePort = int32(n)
		changed = true
	}
	if !changed {
		return nil
	}
	// Conditional on the resourceVersion the allocation was made for: a
	// Service changed meanwhile (or allocated by another leader) conflicts,
	// and the record this attempt holds is reused next time.
	if _, err := client.Update(ctx, t.c.c, next); err != nil {
		if client.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("write allocation of service %s: %w", key, err)
	}
	return nil
}

var errTaken = errors.New("allocated to another service")

func (t *term) warn(ctx context.Context, svc *apiv1.Service, reason, msg string) {
	t.c.cfg.Logger.Warn("service allocation refused", "service", client.Key(svc), "reason", reason, "msg", msg)
	if err := t.c.rec.Event(ctx, svc, client.EventWarning, reason, msg); err != nil {
		t.c.cfg.Logger.Debug("event not recorded", "err", err)
	}
}

// claim makes sure record name exists and belongs to svc.
func (t *term) claim(ctx context.Context, svc *apiv1.Service, name, kind string) error {
	uid := svc.GetMetadata().GetUid()
	t.mu.Lock()
	r := t.records[name]
	t.mu.Unlock()
	if r != nil {
		if r.owner == uid {
			return nil
		}
		return errTaken
	}
	return t.create(ctx, svc, name, kind)
}

// create writes a record; errTaken if it exists for another Service.
func (t *term) create(ctx context.Context, svc *apiv1.Service, name, kind string) error {
	uid := svc.GetMetadata().GetUid()
	cm := &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Name: name, Namespace: t.c.cfg.RecordNamespace,
		Labels: map[string]string{LabelAllocation: kind}},
		Data: map[string]string{dataService: client.Key(svc), dataUID: uid, dataForVersion: svc.GetMetadata().GetResourceVersion()}}
	out, err := client.Create(ctx, t.c.c, cm)
	if err == nil {
		t.setRecord(out)
		return nil
	}
	if !client.IsAlreadyExists(err) {
		return fmt.Errorf("create allocation record %s: %w", name, err)
	}
	cur, gerr := client.Get[*apiv1.ConfigMap](ctx, t.c.c, t.c.cfg.RecordNamespace, name)
	if gerr != nil {
		return fmt.Errorf("read allocation record %s: %w", name, gerr)
	}
	t.setRecord(cur)
	if cur.GetData()[dataUID] == uid {
		return nil
	}
	return errTaken
}

// allocate returns a value of kind ("clusterip" or "nodeport") for svc:
// a record it already owns and does not use (reusable says so), else a
// fresh one created here. The value is returned as the IP, or as the
// record name for node ports.
func (t *term) allocate(ctx context.Context, svc *apiv1.Service, kind string, reusable func(*record) bool) (string, error) {
	uid := svc.GetMetadata().GetUid()
	prefix := kind + "-"
	var mine []string
	t.mu.Lock()
	for _, r := range t.records {
		if r.owner == uid && strings.HasPrefix(r.name, prefix) && reusable(r) {
			mine = append(mine, r.name)
		}
	}
	t.mu.Unlock()
	for _, name := range mine {
		ok, err := t.reclaim(ctx, svc, name)
		if err != nil {
			return "", err
		}
		if ok {
			return t.value(kind, name), nil
		}
	}
	for attempt := 0; attempt < 64; attempt++ {
		name, err := t.pickFree(kind)
		if err != nil {
			return "", err
		}
		err = t.create(ctx, svc, name, kind)
		t.mu.Lock()
		delete(t.claimed, name)
		t.mu.Unlock()
		if errors.Is(err, errTaken) {
			continue // someone else's since we looked: try another
		}
		if err != nil {
			return "", err
		}
		return t.value(kind, name), nil
	}
	return "", fmt.Errorf("allocate %s for service %s: too many collisions", kind, client.Key(svc))
}

// reclaim re-dates a record svc already owns (made for an earlier attempt
// whose Service update lost) to svc's current resourceVersion, which the
// coming update is conditional on, so collect cannot take it while that
// update may still land. The record write is conditional on the record's
// own resourceVersion, as collect's delete is: of the two, one loses.
// false: the record is gone or changed; allocate afresh.
func (t *term) reclaim(ctx context.Context, svc *apiv1.Service, name string) (bool, error) {
	cur, err := client.Get[*apiv1.ConfigMap](ctx, t.c.c, t.c.cfg.RecordNamespace, name)
	if client.IsNotFound(err) {
		t.forget(name)
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read allocation record %s: %w", name, err)
	}
	if cur.GetData()[dataUID] != svc.GetMetadata().GetUid() {
		t.setRecord(cur)
		return false, nil
	}
	cur.Data[dataForVersion] = svc.GetMetadata().GetResourceVersion()
	out, err := client.Update(ctx, t.c.c, cur)
	if client.IsNotFound(err) || client.IsConflict(err) {
		t.forget(name)
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("re-claim allocation record %s: %w", name, err)
	}
	t.setRecord(out)
	return true, nil
}

func (t *term) forget(name string) {
	t.mu.Lock()
	delete(t.records, name)
	t.mu.Unlock()
}

func (t *term) value(kind, name string) string {
	if kind == "clusterip" {
		return strings.TrimPrefix(name, "clusterip-")
	}
	return name
}

// pickFree chooses a free record name and marks it claimed.
func (t *term) pickFree(kind string) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	taken := func(name string) bool {
		_, reserved := t.c.cfg.Reserved[strings.TrimPrefix(name, "clusterip-")]
		return t.records[name] != nil || t.claimed[name] || (kind == "clusterip" && reserved)
	}
	var name string
	var ok bool
	if kind == "clusterip" {
		name, ok = pick(t.rng, t.c.ips.size, func(i uint64) string { return clusterIPRecord(t.c.ips.at(i).String()) }, taken)
	} else {
		lo, n := t.c.cfg.NodePortMin, uint64(t.c.cfg.NodePortMax-t.c.cfg.NodePortMin+1)
		name, ok = pick(t.rng, n, func(i uint64) string { return nodePortRecord(lo + int32(i)) }, taken)
	}
	if !ok {
		return "", fmt.Errorf("allocate %s: %w", kind, ErrRangeFull)
	}
	t.claimed[name] = true
	return name, nil
}

// collect deletes a record whose Service is gone (at once) or does not
// use it: once the Service has moved past the resourceVersion the record
// was made for (the update that would have used it can no longer land),
// or, for a record without that version or a Service this informer has
// not seen, after OrphanGrace. Time alone is not enough: a slow update, or
// this loop's informer lagging behind another allocator's update, gave one
// address to two Services.
func (c *Controller) collect(ctx context.Context, name string) error {
	t := c.t
	t.mu.Lock()
	r := t.records[name]
	var gone bool
	if r != nil {
		gone = t.gone[r.owner]
	}
	t.mu.Unlock()
	if r == nil {
		return nil
	}
	if !gone {
		ns, svcName, _ := strings.Cut(r.service, "/")
		obj, ok := c.services.Get(ns, svcName)
		switch {
		case ok && obj.GetMetadata().GetUid() == r.owner:
			if uses(obj.(*apiv1.Service), name) {
				return nil
			}
			if r.forRV != 0 && client.Revision(obj.GetMetadata().GetResourceVersion()) <= r.forRV {
				return nil // the update made for it may still land
			}
			if r.forRV == 0 && time.Since(r.created) < t.c.cfg.OrphanGrace {
				return nil
			}
		case time.Since(r.created) < t.c.cfg.OrphanGrace:
			return nil // not seen here yet, or replaced: give it time
		}
	}
	_, _, err := t.c.c.Delete(ctx, "ConfigMap", t.c.cfg.RecordNamespace, name, client.DeleteOptions{UID: r.uid, ResourceVersion: r.rv})
	if client.IsConflict(err) {
		return nil // re-claimed (or replaced) since it was read: its newer version decides
	}
	if err != nil && !client.IsNotFound(err) {
		return fmt.Errorf("release %s: %w", name, err)
	}
	t.forget(name)
	return nil
}

// uses: the Service's spec holds the record's value.
func uses(s *apiv1.Service, name string) bool {
	ip, ports := wants(s)
	if ip != "-" && ip != "" && clusterIPRecord(ip) == name {
		return true
	}
	for _, p := range ports {
		if p != 0 && nodePortRecord(p) == name {
			return true
		}
	}
	return false
}
