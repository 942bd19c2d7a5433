package clusterdns

import (
	"context"
	"errors"
	"net/netip"
	"sync"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// The cluster DNS Service: its ClusterIP is the address every node
// answers at, its annotation the cluster domain.
const (
	ServiceNamespace        = "kube-system"
	ServiceName             = "kube-dns"
	AnnotationClusterDomain = "skiff.dev/cluster-domain"
)

// Settings are what a pod's resolv.conf needs from the cluster.
type Settings struct {
	Nameserver netip.Addr
	Domain     string
}

// feed keeps a Zone in line with the API's Services, Endpoints and Pods,
// and follows the kube-dns Service's settings.
type feed struct {
	zone                *Zone
	services, eps, pods *client.Informer
	mu                  sync.Mutex // serializes recomputation
	podsBySvc           map[ServiceKey]map[string]PodHost
	podSvc              map[string]ServiceKey // pod ns/name → its subdomain's key
	settingsMu          sync.Mutex
	settings            Settings
	settingsChanged     chan struct{} // closed and replaced at each change
	synced              bool
}

func newFeed(c *client.Client, zone *Zone) *feed {
	f := &feed{zone: zone, podsBySvc: map[ServiceKey]map[string]PodHost{}, podSvc: map[string]ServiceKey{},
		settingsChanged: make(chan struct{})}
	h := client.EventHandler{
		OnAdd:    func(o client.Object) { f.update(keyOf(o)) },
		OnUpdate: func(_, o client.Object) { f.update(keyOf(o)) },
		OnDelete: func(o client.Object) { f.update(keyOf(o)) },
	}
	f.services = client.NewInformer(c, "Service", client.ListOptions{}, h)
	f.eps = client.NewInformer(c, "Endpoints", client.ListOptions{}, h)
	f.pods = client.NewInformer(c, "Pod", client.ListOptions{}, client.EventHandler{
		OnAdd:    func(o client.Object) { f.pod(o, false) },
		OnUpdate: func(_, o client.Object) { f.pod(o, false) },
		OnDelete: func(o client.Object) { f.pod(o, true) },
	})
	return f
}

func keyOf(o client.Object) ServiceKey {
	return ServiceKey{Namespace: o.GetMetadata().GetNamespace(), Name: o.GetMetadata().GetName()}
}

// run runs the informers until ctx ends; synced is called once all three
// have listed.
func (f *feed) run(ctx context.Context, synced func()) error {
	errs := make(chan error, 3)
	for _, i := range []*client.Informer{f.services, f.eps, f.pods} {
		go func() { errs <- i.Run(ctx) }()
	}
	go func() {
		for _, i := range []*client.Informer{f.services, f.eps, f.pods} {
			if i.WaitForSync(ctx) != nil {
				return
			}
		}
		f.settingsMu.Lock()
		f.synced = true
		close(f.settingsChanged)
		f.settingsChanged = make(chan struct{})
		f.settingsMu.Unlock()
		f.update(ServiceKey{ServiceNamespace, ServiceName}) // settings known (or known absent)
		synced()
	}()
	var first error
	for range 3 {
		if err := <-errs; err != nil && first == nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
			first = err
		}
	}
	return first
}

// pod files a pod under the headless Service its subdomain names.
func (f *feed) pod(o client.Object, deleted bool) {
	p, ok := o.(*apiv1.Pod)
	if !ok {
		return
	}
	id := p.GetMetadata().GetNamespace() + "/" + p.GetMetadata().GetName()
	f.mu.Lock()
	old, had := f.podSvc[id]
	if had {
		delete(f.podsBySvc[old], id)
		if len(f.podsBySvc[old]) == 0 {
			delete(f.podsBySvc, old)
		}
		delete(f.podSvc, id)
	}
	var k ServiceKey
	sp := p.GetSpec()
	if !deleted && sp.GetSubdomain() != "" && sp.GetHostname() != "" && p.GetMetadata().GetDeletionTimestamp() == "" {
		ip, _ := netip.ParseAddr(p.GetStatus().GetPodIP())
		k = ServiceKey{p.GetMetadata().GetNamespace(), sp.GetSubdomain()}
		if f.podsBySvc[k] == nil {
			f.podsBySvc[k] = map[string]PodHost{}
		}
		f.podsBySvc[k][id] = PodHost{Hostname: sp.GetHostname(), IP: ip, Ready: podReady(p)}
		f.podSvc[id] = k
	}
	f.mu.Unlock()
	if had && old != k {
		f.update(old)
	}
	if k.Name != "" {
		f.update(k)
	}
}

func podReady(p *apiv1.Pod) bool {
	for _, c := range p.GetStatus().GetConditions() {
		if c.GetType() == "Ready" {
			return c.GetStatus() == "True"
		}
	}
	return false
}

// update recomputes one Service's names from the three caches.
func (f *feed) update(k ServiceKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.services.Get(k.Namespace, k.Name)
	svc, _ := o.(*apiv1.Service)
	if k.Namespace == ServiceNamespace && k.Name == ServiceName && f.followSettings(svc) {
		return // the whole zone was rebuilt
	}
	if !ok || svc == nil {
		f.zone.Delete(k)
		return
	}
	f.set(svc)
}

func (f *feed) set(svc *apiv1.Service) {
	k := keyOf(svc)
	var eps *apiv1.Endpoints
	if o, ok := f.eps.Get(k.Namespace, k.Name); ok {
		eps, _ = o.(*apiv1.Endpoints)
	}
	var pods []PodHost
	for _, p := range f.podsBySvc[k] {
		pods = append(pods, p)
	}
	f.zone.Set(svc, eps, pods)
}

// followSettings reads the kube-dns Service (nil: absent); when the
// domain changes the zone is rebuilt under it, and true returned.
// Called with f.mu held.
func (f *feed) followSettings(svc *apiv1.Service) bool {
	var s Settings
	if svc != nil {
		s.Nameserver, _ = netip.ParseAddr(svc.GetSpec().GetClusterIP())
		s.Domain = svc.GetMetadata().GetAnnotations()[AnnotationClusterDomain]
		if s.Domain == "" {
			s.Domain = DefaultDomain
		}
	}
	f.settingsMu.Lock()
	changed := s != f.settings
	if changed {
		f.settings = s
		close(f.settingsChanged)
		f.settingsChanged = make(chan struct{})
	}
	f.settingsMu.Unlock()
	if !changed || s.Domain == "" || s.Domain == f.zone.Domain() {
		return false
	}
	f.zone.SetDomain(s.Domain)
	for _, o := range f.services.List() {
		if svc, ok := o.(*apiv1.Service); ok {
			f.set(svc)
		}
	}
	return true
}

// current returns the settings (zero Nameserver: no kube-dns Service
// with an address yet), whether the caches have synced, and a channel
// closed at the next change.
func (f *feed) current() (Settings, bool, <-chan struct{}) {
	f.settingsMu.Lock()
	defer f.settingsMu.Unlock()
	return f.settings, f.synced, f.settingsChanged
}
