package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/skiffhq/skiff/agent/image"
	"github.com/skiffhq/skiff/agent/network"
	"github.com/skiffhq/skiff/agent/probe"
)

// Sentinel errors.
var (
	ErrPodNotFound       = errors.New("pod not found")
	ErrContainerNotFound = errors.New("container not found")
	ErrNotRunning        = errors.New("container is not running")
	ErrPodExists         = errors.New("pod already exists with a different spec")
	ErrClosed            = errors.New("runtime closed")
	// ErrNoPreviousInstance: logs of the previous instance were asked of a
	// container that has not restarted.
	ErrNoPreviousInstance = errors.New("previous terminated container not found")
)

// ImageService is what the runtime needs from agent/image.
type ImageService interface {
	Ensure(ctx context.Context, ref string, policy image.PullPolicy, opts image.PullOptions) (*image.Image, error)
	Lookup(ref string) (*image.Image, bool)
	MountRootfs(id string, img *image.Image) (string, error)
	UnmountRootfs(id string) error
	RootfsIDs() ([]string, error)
}

// NetworkService is what the runtime needs from agent/network.
type NetworkService interface {
	CreateNetns(id string) (string, error)
	DeleteNetns(id string) error
	ListNetns() ([]string, error)
	Setup(ctx context.Context, id, netns string, ports []network.PortMapping) (*network.Attachment, error)
	Teardown(ctx context.Context, id, netns string, ports []network.PortMapping) error
}

// Config of a Runtime.
type Config struct {
	// StateDir holds pod records, volumes, logs and libcontainer state.
	StateDir string
	// CgroupRoot is the absolute cgroup parent of all pods ("/skiff").
	CgroupRoot string
	Images     ImageService
	Network    NetworkService
	// PidsLimit per container (0: none).
	PidsLimit int64
	// LogMaxBytes per log file before rotation; LogMaxFiles kept per container.
	LogMaxBytes int64
	LogMaxFiles int
	// Restart back-off: Base doubles per restart up to Max; a container that
	// ran for Reset starts over at Base (Kubernetes: 10s, 5m, 10m).
	BackoffBase, BackoffMax, BackoffReset time.Duration
	// ProbeUnit is the length of a probe "second" (time.Second).
	ProbeUnit time.Duration
	// ProbeMetrics, when set, counts probe results.
	ProbeMetrics *probe.Metrics
	Logger       *slog.Logger
}

// DefaultConfig is the node layout and Kubernetes' timings.
func DefaultConfig() Config {
	return Config{
		StateDir:     "/var/lib/skiff/pods",
		CgroupRoot:   "/skiff",
		PidsLimit:    4096,
		LogMaxBytes:  10 << 20,
		LogMaxFiles:  5,
		BackoffBase:  10 * time.Second,
		BackoffMax:   5 * time.Minute,
		BackoffReset: 10 * time.Minute,
		ProbeUnit:    time.Second,
	}
}

// Runtime runs this node's pods. Safe for concurrent use.
type Runtime struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	pods   map[string]*podRT
	closed bool
}

func (r *Runtime) podsDir() string { return filepath.Join(r.cfg.StateDir, "pods") }
func (r *Runtime) lcRoot() string  { return filepath.Join(r.cfg.StateDir, "libcontainer") }
func (r *Runtime) podDir(uid string) string {
	return filepath.Join(r.podsDir(), uid)
}

// New opens the runtime on cfg.StateDir: pods recorded there are re-attached
// (running containers keep running and are supervised again), and
// leftovers that belong to no recorded pod are removed.
func New(ctx context.Context, cfg Config) (*Runtime, error) {
	d := DefaultConfig()
	if cfg.StateDir == "" || cfg.Images == nil || cfg.Network == nil {
		return nil, errors.New("runtime: Config needs StateDir, Images and Network")
	}
	if cfg.CgroupRoot == "" {
		cfg.CgroupRoot = d.CgroupRoot
	}
	if !filepath.IsAbs(cfg.CgroupRoot) {
		return nil, fmt.Errorf("runtime: CgroupRoot %q must be absolute", cfg.CgroupRoot)
	}
	if cfg.LogMaxFiles <= 0 {
		cfg.LogMaxFiles = d.LogMaxFiles
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = d.BackoffBase
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = d.BackoffMax
	}
	if cfg.BackoffReset <= 0 {
		cfg.BackoffReset = d.BackoffReset
	}
	if cfg.ProbeUnit <= 0 {
		cfg.ProbeUnit = d.ProbeUnit
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Runtime{cfg: cfg, log: cfg.Logger, pods: map[string]*podRT{}}
	for _, dir := range []string{r.podsDir(), r.lcRoot()} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("runtime: %w", err)
		}
	}
	ents, err := os.ReadDir(r.podsDir())
	if err != nil {
		return nil, fmt.Errorf("runtime: %w", err)
	}
	for _, e := range ents {
		rec, err := r.loadRecord(e.Name())
		if err != nil {
			r.log.Warn("pod record unreadable; removing the pod's leftovers", "uid", e.Name(), "err", err)
			continue
		}
		p := r.newPodRT(rec)
		if err := p.reattach(); err != nil {
			r.log.Error("re-attach failed", "uid", rec.Pod.UID, "err", err)
		}
		r.pods[rec.Pod.UID] = p
	}
	if err := r.cleanupLeftovers(ctx); err != nil {
		r.log.Warn("leftover cleanup incomplete", "err", err)
	}
	return r, nil
}

func (r *Runtime) loadRecord(uid string) (*podRecord, error) {
	b, err := os.ReadFile(filepath.Join(r.podDir(uid), "pod.json"))
	if err != nil {
		return nil, err
	}
	var rec podRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, err
	}
	if rec.Pod.UID != uid {
		return nil, fmt.Errorf("record for %q found in dir %q", rec.Pod.UID, uid)
	}
	return &rec, nil
}

// RunPod creates the pod's sandbox and starts supervising it: images are
// pulled and containers started in the background (watch PodStatus).
// Running an already known pod with the same UID is a no-op.
func (r *Runtime) RunPod(ctx context.Context, pod *Pod) error {
	if err := pod.Validate(); err != nil {
		return err
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	if _, ok := r.pods[pod.UID]; ok {
		r.mu.Unlock()
		return nil
	}
	rec := &podRecord{Pod: *pod, StartTime: time.Now(), Ctrs: map[string]*ctrRecord{}}
	p := r.newPodRT(rec)
	r.pods[pod.UID] = p
	r.mu.Unlock()
	if err := p.createSandbox(ctx); err != nil {
		p.teardownSandbox(context.WithoutCancel(ctx))
		_ = os.RemoveAll(r.podDir(pod.UID))
		r.mu.Lock()
		delete(r.pods, pod.UID)
		r.mu.Unlock()
		return err
	}
	p.start()
	return nil
}

func (r *Runtime) pod(uid string) (*podRT, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.pods[uid]
	if !ok {
		return nil, fmt.Errorf("%s: %w", uid, ErrPodNotFound)
	}
	return p, nil
}

// StopPod stops all of the pod's containers (SIGTERM, then SIGKILL after
// grace; nil grace uses the pod's terminationGracePeriodSeconds) and tears
// the sandbox down. Status and logs stay until RemovePod.
func (r *Runtime) StopPod(ctx context.Context, uid string, grace *time.Duration) error {
	p, err := r.pod(uid)
	if err != nil {
		return err
	}
	return p.stop(ctx, grace)
}

// RemovePod stops the pod if needed and deletes everything it left.
func (r *Runtime) RemovePod(ctx context.Context, uid string) error {
	p, err := r.pod(uid)
	if err != nil {
		return err
	}
	if err := p.stop(ctx, nil); err != nil {
		return err
	}
	if err := os.RemoveAll(r.podDir(uid)); err != nil {
		return fmt.Errorf("runtime: remove pod %s: %w", uid, err)
	}
	r.mu.Lock()
	delete(r.pods, uid)
	r.mu.Unlock()
	return nil
}

// PodStatus reports the pod's current status.
func (r *Runtime) PodStatus(uid string) (PodStatus, error) {
	p, err := r.pod(uid)
	if err != nil {
		return PodStatus{}, err
	}
	return p.status(), nil
}

// ListPods reports every pod the runtime knows, sorted by UID.
func (r *Runtime) ListPods() []PodStatus {
	r.mu.Lock()
	ps := make([]*podRT, 0, len(r.pods))
	for _, p := range r.pods {
		ps = append(ps, p)
	}
	r.mu.Unlock()
	out := make([]PodStatus, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.status())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	return out
}

// RemoveOrphans removes every pod whose UID keep rejects (the sync loop
// passes the pods the API still binds to this node).
func (r *Runtime) RemoveOrphans(ctx context.Context, keep func(uid string) bool) error {
	var errs []error
	for _, st := range r.ListPods() {
		if !keep(st.UID) {
			errs = append(errs, r.RemovePod(ctx, st.UID))
		}
	}
	return errors.Join(errs...)
}

// ImagesInUse reports the image IDs of known pods' containers (for image GC).
func (r *Runtime) ImagesInUse() map[string]bool {
	in := map[string]bool{}
	for _, st := range r.ListPods() {
		for _, cs := range append(st.InitContainerStatuses, st.ContainerStatuses...) {
			if cs.ImageID != "" {
				in[cs.ImageID] = true
			}
		}
	}
	return in
}

// Close stops supervising without touching the containers, as if the agent
// process ended: a new Runtime on the same StateDir re-attaches them.
func (r *Runtime) Close() error {
	r.mu.Lock()
	r.closed = true
	ps := make([]*podRT, 0, len(r.pods))
	for _, p := range r.pods {
		ps = append(ps, p)
	}
	r.mu.Unlock()
	for _, p := range ps {
		p.detach()
	}
	return nil
}
