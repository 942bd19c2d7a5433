package api

import (
	"bytes"
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/codec"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// ErrGraphNotReady means the node graph has not indexed this server's
// pods yet (or lost its watch and is re-reading them). It is ErrUndecided:
// the caller is answered Unavailable and tries again (or another server);
// the node authorizer never guesses.
var ErrGraphNotReady = fmt.Errorf("%w: the node authorization graph is not ready", ErrUndecided)

// podReferrer is one way a pod spec names an object of Kind in the pod's
// namespace. A new kind of reference (a new volume source, a new kind a
// node may read through its pods) is one entry in podReferrers.
type podReferrer struct {
	Kind  string
	names func(spec *apiv1.PodSpec, visit func(name string))
}

var podReferrers = []podReferrer{
	{Kind: "Secret", names: podSecretNames},
	{Kind: "ConfigMap", names: podConfigMapNames},
	{Kind: "PersistentVolumeClaim", names: podClaimNames},
}

func podContainers(spec *apiv1.PodSpec) []*apiv1.Container {
	return append(append([]*apiv1.Container(nil), spec.GetInitContainers()...), spec.GetContainers()...)
}

func podSecretNames(spec *apiv1.PodSpec, visit func(string)) {
	for _, r := range spec.GetImagePullSecrets() {
		visit(r.GetName())
	}
	for _, v := range spec.GetVolumes() {
		visit(v.GetSecret().GetSecretName())
		for _, p := range v.GetProjected().GetSources() {
			visit(p.GetSecret().GetName())
		}
	}
	for _, c := range podContainers(spec) {
		for _, e := range c.GetEnvFrom() {
			visit(e.GetSecretRef().GetName())
		}
		for _, e := range c.GetEnv() {
			visit(e.GetValueFrom().GetSecretKeyRef().GetName())
		}
	}
}

func podConfigMapNames(spec *apiv1.PodSpec, visit func(string)) {
	for _, v := range spec.GetVolumes() {
		visit(v.GetConfigMap().GetName())
		for _, p := range v.GetProjected().GetSources() {
			visit(p.GetConfigMap().GetName())
		}
	}
	for _, c := range podContainers(spec) {
		for _, e := range c.GetEnvFrom() {
			visit(e.GetConfigMapRef().GetName())
		}
		for _, e := range c.GetEnv() {
			visit(e.GetValueFrom().GetConfigMapKeyRef().GetName())
		}
	}
}

func podClaimNames(spec *apiv1.PodSpec, visit func(string)) {
	for _, v := range spec.GetVolumes() {
		visit(v.GetPersistentVolumeClaim().GetClaimName())
	}
}

// graphRef is one object a node may read because a pod bound to it
// refers to it.
type graphRef struct {
	node, kind, namespace, name string
}

// graphPod is what the graph keeps of one stored pod.
type graphPod struct {
	// specHash identifies the spec bytes indexed, so status writes (most
	// pod writes) cost a hash and no decode.
	specHash uint64
	refs     []graphRef
}

// NodeGraph indexes which Secrets, ConfigMaps and PersistentVolumeClaims
// the pods bound to each node reference, as Kubernetes' node authorizer
// does. It is built on every control node from that node's own store (a
// read of all pods, then a watch of them), so followers serving API reads
// decide on the same data as the leader, and it is kept current as pods are
// bound, changed and deleted: a decision is a map lookup, never a scan.
//
// A lookup that misses first catches up with the cluster (a linearizable
// barrier, then waiting for the watch to pass that revision): an agent that
// saw its new pod on another control node must not be refused here because
// this node's watch is a few milliseconds behind.
type NodeGraph struct {
	store *consensus.Store
	pods  *kinds.Kind
	// ingresses: a node also reads the TLS Secrets of the Ingresses its
	// built-in ingress controller serves (nodegraph_ingress.go).
	ingresses *kinds.Kind
	log       *slog.Logger
	seed      maphash.Seed
	// catchUp bounds the wait for the index to reach the cluster's
	// revision on a miss.
	catchUp time.Duration
	// progress is how often a quiet watch reports the revision it passed.
	progress time.Duration

	mu      sync.RWMutex
	byPod   map[string]graphPod // store key of the pod -> its entry
	refs    map[graphRef]int    // -> number of pods referencing it
	rev     int64               // store revision the index reflects
	ready   bool
	advance chan struct{} // closed (and replaced) whenever rev or ready change
}

// NewNodeGraph returns a graph over store's pods (reg: the kinds served;
// nil means kinds.NewRegistry()). It indexes nothing until Run.
func NewNodeGraph(store *consensus.Store, reg *kinds.Registry, log *slog.Logger) *NodeGraph {
	if reg == nil {
		reg = kinds.NewRegistry()
	}
	if log == nil {
		log = slog.Default()
	}
	pods, _ := reg.ForKind("Pod")
	ingresses, _ := reg.ForKind("Ingress")
	return &NodeGraph{store: store, pods: pods, ingresses: ingresses, log: log.With("component", "nodegraph"), seed: maphash.MakeSeed(),
		catchUp: 2 * time.Second, progress: 50 * time.Millisecond,
		byPod: map[string]graphPod{}, refs: map[graphRef]int{}, advance: make(chan struct{})}
}

// Guards reports whether a node reads objects of kind only through the
// graph: the kinds of podReferrers.
func (g *NodeGraph) Guards(kind string) bool {
	for _, r := range podReferrers {
		if r.Kind == kind {
			return true
		}
	}
	return false
}

// References reports whether a pod bound to node references the object
// kind namespace/name. On a miss it first catches up with the cluster's
// latest revision (bounded by ctx and a short timeout), so the answer
// reflects every binding committed before the call. A Secret is also
// referenced (for every node) when a built-in-class Ingress in its
// namespace names it in spec.tls: each worker's ingress controller serves
// it. It fails with ErrGraphNotReady when the index has not been built.
func (g *NodeGraph) References(ctx context.Context, node, kind, namespace, name string) (bool, error) {
	ref := graphRef{node: node, kind: kind, namespace: namespace, name: name}
	found, ready := g.lookup(ref)
	if found {
		return true, nil
	}
	if !ready {
		if err := g.waitReady(ctx); err != nil {
			return false, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, g.catchUp)
	defer cancel()
	if err := g.store.Linearize(ctx); err != nil {
		return false, fmt.Errorf("%w: node graph: catch up with the cluster: %w", ErrUndecided, err)
	}
	if err := g.waitRevision(ctx, g.store.Revision()); err != nil {
		return false, err
	}
	if ok, _ := g.lookup(ref); ok {
		return true, nil
	}
	if kind == "Secret" {
		return g.ingressReferencesSecret(ctx, namespace, name)
	}
	return false, nil
}

// lookup answers from the index; found only while it is ready (a graph
// re-reading its pods after a lost watch may hold bindings since gone).
func (g *NodeGraph) lookup(ref graphRef) (found, ready bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.ready && g.refs[ref] > 0, g.ready
}

// waitReady waits (briefly) for the first index.
func (g *NodeGraph) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, g.catchUp)
	defer cancel()
	for {
		g.mu.RLock()
		ready, ch := g.ready, g.advance
		g.mu.RUnlock()
		if ready {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: this control node is still reading its pods", ErrGraphNotReady)
		}
	}
}

// waitRevision waits until the index reflects revision rev.
func (g *NodeGraph) waitRevision(ctx context.Context, rev int64) error {
	for {
		g.mu.RLock()
		cur, ready, ch := g.rev, g.ready, g.advance
		g.mu.RUnlock()
		if ready && cur >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			if !ready {
				return fmt.Errorf("%w: this control node is re-reading its pods", ErrGraphNotReady)
			}
			return fmt.Errorf("%w: indexed up to revision %d, the cluster is at %d", ErrGraphNotReady, cur, rev)
		}
	}
}

// Run keeps the graph current until ctx ends: it reads every pod, then
// follows the pod watch; when the watch fails (history compacted past it,
// a snapshot restored) it reads everything again. Errors are logged and
// retried; Run returns only when ctx ends.
func (g *NodeGraph) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := g.follow(ctx)
		g.mu.Lock()
		g.ready = false
		g.signalLocked()
		g.mu.Unlock()
		if ctx.Err() != nil {
			return nil
		}
		g.log.Warn("node graph lost its pod watch; reading all pods again", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	return nil
}

// follow loads every pod and then applies the watch until it fails.
func (g *NodeGraph) follow(ctx context.Context) error {
	rev, err := g.load(ctx)
	if err != nil {
		return err
	}
	w, err := g.store.Watch(ctx, []byte(g.pods.Prefix("")), true, rev+1, consensus.WithProgressNotify(g.progress))
	if err != nil {
		return fmt.Errorf("watch pods from revision %d: %w", rev+1, err)
	}
	defer w.Stop()
	for batch := range w.C {
		g.mu.Lock()
		for _, ev := range batch.Events {
			if ev.Type == storepb.Event_DELETE {
				g.removeLocked(string(ev.Kv.Key))
				continue
			}
			g.putLocked(ev.Kv)
		}
		g.setRevLocked(batch.Revision)
		g.mu.Unlock()
	}
	return w.Err()
}

// load replaces the index with one read from the local store (pages of a
// stale read: the index follows this node's state, and the watch from the
// first page's revision replays whatever later pages saw newer).
func (g *NodeGraph) load(ctx context.Context) (int64, error) {
	byPod, refs := map[string]graphPod{}, map[graphRef]int{}
	fresh := &NodeGraph{pods: g.pods, log: g.log, seed: g.seed, byPod: byPod, refs: refs}
	var rev int64
	var after []byte
	for {
		resp, err := g.store.Range(ctx, &storepb.RangeRequest{Key: []byte(g.pods.Prefix("")), Prefix: true,
			Limit: maxListPage, ContinueAfter: after, Stale: true})
		if err != nil {
			return 0, fmt.Errorf("read pods: %w", err)
		}
		if rev == 0 {
			rev = resp.Revision
		}
		for _, kv := range resp.Kvs {
			fresh.putLocked(kv)
		}
		if !resp.More {
			break
		}
		after = resp.NextKey
	}
	g.mu.Lock()
	g.byPod, g.refs, g.rev, g.ready = byPod, refs, rev, true
	g.signalLocked()
	g.mu.Unlock()
	return rev, nil
}

func (g *NodeGraph) setRevLocked(rev int64) {
	g.rev = rev
	g.signalLocked()
}

// signalLocked wakes the lookups waiting for the index to move.
func (g *NodeGraph) signalLocked() {
	close(g.advance)
	g.advance = make(chan struct{})
}

// putLocked indexes one stored pod, replacing what its key had.
func (g *NodeGraph) putLocked(kv *storepb.KeyValue) {
	key := string(kv.Key)
	spec, err := podSpecBytes(kv.Value)
	if err != nil {
		// The API stores only pods it decoded; a record it cannot read
		// grants nothing.
		g.log.Error("node graph: undecodable pod; it grants its node nothing", "key", key, "err", err)
		g.removeLocked(key)
		return
	}
	h := maphash.Bytes(g.seed, spec)
	if old, ok := g.byPod[key]; ok && old.specHash == h {
		return
	}
	g.removeLocked(key)
	refs, err := podRefs(key, g.pods.Prefix(""), spec)
	if err != nil {
		g.log.Error("node graph: undecodable pod spec; it grants its node nothing", "key", key, "err", err)
		return
	}
	for _, r := range refs {
		g.refs[r]++
	}
	g.byPod[key] = graphPod{specHash: h, refs: refs}
}

func (g *NodeGraph) removeLocked(key string) {
	old, ok := g.byPod[key]
	if !ok {
		return
	}
	for _, r := range old.refs {
		if g.refs[r]--; g.refs[r] <= 0 {
			delete(g.refs, r)
		}
	}
	delete(g.byPod, key)
}

// podRefs lists the objects a stored pod's spec makes readable by the node
// it is bound to (none for a pod not bound).
func podRefs(key, prefix string, specBytes []byte) ([]graphRef, error) {
	// Most pods are created unbound and bound by the scheduler later: read
	// nodeName off the wire and decode only bound pods.
	if bound, err := specBound(specBytes); err != nil || !bound {
		return nil, err
	}
	spec := &apiv1.PodSpec{}
	// Decoded aliasing the stored record (immutable); the few names the
	// index keeps are copied out, so it never holds the record.
	if err := codec.UnmarshalAliasing(specBytes, spec); err != nil {
		return nil, err
	}
	node := strings.Clone(spec.GetNodeName())
	if node == "" {
		return nil, nil
	}
	namespace, _, ok := strings.Cut(strings.TrimPrefix(key, prefix), "/")
	if !ok {
		return nil, fmt.Errorf("pod key %q has no namespace", key)
	}
	var refs []graphRef
	for _, r := range podReferrers {
		r.names(spec, func(name string) {
			ref := graphRef{node: node, kind: r.Kind, namespace: namespace, name: name}
			if name != "" && !slices.Contains(refs, ref) { // a handful per pod
				ref.name = strings.Clone(name)
				refs = append(refs, ref)
			}
		})
	}
	return refs, nil
}

// podSpecNodeNameField is PodSpec.nodeName's field number.
const podSpecNodeNameField = 12

// specBound reports whether an encoded PodSpec has a non-empty nodeName.
func specBound(spec []byte) (bool, error) {
	bound := false
	for len(spec) > 0 {
		num, typ, m := protowire.ConsumeTag(spec)
		if m < 0 {
			return false, protowire.ParseError(m)
		}
		spec = spec[m:]
		if num == podSpecNodeNameField && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(spec)
			if m < 0 {
				return false, protowire.ParseError(m)
			}
			bound = len(v) > 0 // the last occurrence wins
			spec = spec[m:]
			continue
		}
		if m = protowire.ConsumeFieldValue(num, typ, spec); m < 0 {
			return false, protowire.ParseError(m)
		}
		spec = spec[m:]
	}
	return bound, nil
}

// podSpecField is Pod.spec's field number.
const podSpecField = 4

// podSpecBytes returns the encoded spec of an encoded Pod (occurrences of
// the field concatenated, which decodes as their merge).
func podSpecBytes(pod []byte) ([]byte, error) {
	var out []byte
	n := 0
	b := pod
	for len(b) > 0 {
		num, typ, m := protowire.ConsumeTag(b)
		if m < 0 {
			return nil, protowire.ParseError(m)
		}
		b = b[m:]
		if num == podSpecField && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return nil, protowire.ParseError(m)
			}
			if n == 0 {
				out = v
			} else {
				out = bytes.Join([][]byte{out, v}, nil)
			}
			n++
			b = b[m:]
			continue
		}
		if m = protowire.ConsumeFieldValue(num, typ, b); m < 0 {
			return nil, protowire.ParseError(m)
		}
		b = b[m:]
	}
	return out, nil
}
