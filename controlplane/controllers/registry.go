package controllers

import (
	"context"
	"fmt"
	"log/slog"
	"sort"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiffhq/skiff/controlplane"
	"github.com/skiffhq/skiff/proto/client"
)

// Deps is what a controller is built from. Every control node builds its
// own set: Client talks to that node's API server.
type Deps struct {
	Client *client.Client
	// Recorder records Events signed by the controller's component name.
	Recorder func(component string) *client.Recorder
	Logger   *slog.Logger
	// Registerer is nil when metrics are not collected.
	Registerer prometheus.Registerer
	// Node is this control node's name (event source host).
	Node string
	// Configs holds per-controller configuration by registered name; a
	// controller without an entry uses its DefaultConfig.
	Configs map[string]any
	// Informers, when set, shares informers among the loops (see Watch).
	Informers *client.InformerFactory
	// Sweeper is this control node's API server, for the garbage
	// collector's sweep (nil where no loop needs it).
	Sweeper DeletionSweeper
}

// DeletionSweeper finishes deletions left undone (api.Server.Collect), in
// one pass; the garbagecollector loop runs it on the leader.
type DeletionSweeper interface {
	Collect(ctx context.Context) error
}

// ConfigFor returns d.Configs[name] as a T, or def when there is none. A
// value of another type is an error, not a silent default.
func ConfigFor[T any](d Deps, name string, def T) (T, error) {
	v, ok := d.Configs[name]
	if !ok || v == nil {
		return def, nil
	}
	t, ok := v.(T)
	if !ok {
		return def, fmt.Errorf("%w: config for controller %q is %T, want %T", ErrConfig, name, v, def)
	}
	return t, nil
}

// Factory builds one controller's loop.
type Factory func(Deps) (controlplane.Loop, error)

// ErrConfig: a controller could not be built from its configuration.
var ErrConfig = fmt.Errorf("controller config")

// Registry lists controllers by name. It holds no global state: whoever
// wires a control node (ctl, cptest) makes one and fills it with
// builtin.Register.
type Registry struct {
	factories map[string]Factory
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{factories: map[string]Factory{}} }

// Register adds a controller. Registering a name twice is a programming
// error and panics at start-up, where it is found at once.
func (r *Registry) Register(name string, f Factory) {
	if _, dup := r.factories[name]; dup {
		panic(fmt.Sprintf("controllers: %q registered twice", name))
	}
	r.factories[name] = f
}

// Names lists the registered controllers, sorted.
func (r *Registry) Names() []string {
	out := make([]string, 0, len(r.factories))
	for n := range r.factories {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Build makes the loops of the named controllers (all when names is
// empty), in name order.
func (r *Registry) Build(d Deps, names ...string) ([]controlplane.Loop, error) {
	if len(names) == 0 {
		names = r.Names()
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Recorder == nil {
		c, node := d.Client, d.Node
		d.Recorder = func(component string) *client.Recorder { return client.NewRecorder(c, component, node) }
	}
	var loops []controlplane.Loop
	for _, name := range names {
		f, ok := r.factories[name]
		if !ok {
			return nil, fmt.Errorf("%w: no controller named %q (have %v)", ErrConfig, name, r.Names())
		}
		dd := d
		// No "controller" key here: ctrlkit.NewBase, which every loop is
		// built on, adds it (twice would repeat the key in JSON lines).
		if d.Registerer != nil {
			dd.Registerer = prometheus.WrapRegistererWith(prometheus.Labels{"controller": name}, d.Registerer)
		}
		loop, err := f(dd)
		if err != nil {
			return nil, fmt.Errorf("build controller %q: %w", name, err)
		}
		loops = append(loops, loop)
	}
	return loops, nil
}
