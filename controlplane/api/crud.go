package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/api/manifest"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/codec"
)

// lookup resolves the kind a request names.
func (s *Server) lookup(name string) (*kinds.Kind, error) {
	if name == "" {
		return nil, fmt.Errorf("%w: kind is required", ErrInvalid)
	}
	k, err := s.reg.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return k, nil
}

// unpack opens a request's envelope.
func (s *Server) unpack(env *apiv1.Object) (kinds.Object, *kinds.Kind, error) {
	if env == nil {
		return nil, nil, fmt.Errorf("%w: object is required", ErrInvalid)
	}
	obj, k, err := s.reg.Unpack(env)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := checkUTF8(k, env.GetObject().GetValue(), obj); err != nil {
		return nil, nil, err
	}
	return obj, k, nil
}

// scope normalizes the namespace of a request: namespaced kinds default to
// "default"; cluster-scoped kinds have none.
func scope(k *kinds.Kind, ns string) string {
	if !k.Namespaced {
		return ""
	}
	if ns == "" {
		return "default"
	}
	return ns
}

func invalid(k *kinds.Kind, name string, errs kinds.FieldErrors) error {
	return fmt.Errorf("%w: %s %q is invalid:\n%s", ErrInvalid, k.Resource(), name, errs.Error())
}

func conflictOn(k *kinds.Kind, name string, err error) error {
	return fmt.Errorf("%w: operation cannot be fulfilled on %s %q: the object has been modified; please apply your changes to the latest version and try again (%v)",
		ErrConflict, k.Resource(), name, err)
}

// Create implements apiv1.APIServer.
func (s *Server) Create(ctx context.Context, req *apiv1.CreateRequest) (*apiv1.Object, error) {
	res, err := s.createOne(ctx, req.GetObject(), req.GetDryRun(), false)
	if err != nil {
		// The whole status, not the batch item's code and message: an
		// Unavailable keeps its NOT_APPLIED detail, so the client knows it
		// may send the create again.
		return nil, toStatus(err)
	}
	return res.GetObject(), nil
}

// create defaults, admits, validates and writes a new object.
func (s *Server) create(ctx context.Context, k *kinds.Kind, obj kinds.Object, dryRun bool) (kinds.Object, error) {
	out, _, err := s.createEncoded(ctx, k, obj, dryRun, false)
	return out, err
}

// createEncoded is create that also returns the stored encoding (nil for a
// dry run), so a caller can answer with it instead of encoding again.
// linearized: the caller confirmed leadership (Linearize) after its
// request arrived, so the first attempt reads this node's state as is (a
// CreateMany does that once for all its objects); retries confirm again.
func (s *Server) createEncoded(ctx context.Context, k *kinds.Kind, obj kinds.Object, dryRun, linearized bool) (kinds.Object, []byte, error) {
	md := kinds.Meta(obj)
	if k.Namespaced && md.Namespace == "" {
		md.Namespace = "default"
	}
	if md.Name == "" && md.GenerateName != "" {
		md.Name = md.GenerateName + randomSuffix(5)
	}
	if md.Name == "" {
		return nil, nil, invalid(k, "", kinds.FieldErrors{kinds.Required("metadata.name", "name or generateName is required")})
	}
	md.Uid = newUID()
	md.CreationTimestamp = s.timestamp(s.cfg.Now())
	md.Generation = 1
	md.ResourceVersion = ""
	md.DeletionTimestamp = ""
	md.DeletionGracePeriodSeconds = nil
	k.Default(obj)
	if err := s.authorizeObject(ctx, k, "create", "", nil, obj); err != nil {
		return nil, nil, err
	}
	key := k.Key(md.Namespace, md.Name)
	create := s.chain(k, opCreate)
	for attempt := 0; ; attempt++ {
		if attempt > 0 || !linearized {
			if err := s.store.Linearize(ctx); err != nil {
				return nil, nil, fmt.Errorf("create %s %q: %w", k.Name, md.Name, err)
			}
		}
		// Admission that changes the object works on its own copy
		// (r.obj), so a retry starts from what the client sent.
		r := &admissionRequest{op: opCreate, kind: k, obj: obj}
		r.txn.objectKey = key
		if err := create.runAdmit(ctx, r); err != nil {
			return nil, nil, err
		}
		o := r.obj
		k.PrepareForCreate(o)
		if errs := k.Validate(o); len(errs) > 0 {
			return nil, nil, invalid(k, md.Name, errs)
		}
		if err := create.runValidate(ctx, r); err != nil {
			return nil, nil, err
		}
		if dryRun {
			return o, nil, nil
		}
		value, err := encode(o)
		if err != nil {
			return nil, nil, err
		}
		t := &r.txn
		t.expect(key, 0)
		t.put(key, value)
		rev, err := s.commit(ctx, t)
		switch {
		case err == nil:
			kinds.Meta(o).ResourceVersion = formatRev(rev)
			return o, value, nil
		case errors.Is(err, ErrConflict):
			return nil, nil, fmt.Errorf("%w: %s %q already exists", ErrAlreadyExists, k.Resource(), md.Name)
		case errors.Is(err, errRetry) && attempt < maxAdmissionRetries:
			continue
		default:
			return nil, nil, err
		}
	}
}

// Get implements apiv1.APIServer.
func (s *Server) Get(ctx context.Context, req *apiv1.GetRequest) (*apiv1.Object, error) {
	k, err := s.lookup(req.GetKind())
	if err != nil {
		return nil, toStatus(err)
	}
	ns := scope(k, req.GetNamespace())
	// A node's get of some kinds is decided on the object (authz
	// NeedsStored): authorizeWrite reads it first.
	if err := s.authorizeWrite(ctx, k, "get", "", ns, req.GetName()); err != nil {
		return nil, toStatus(err)
	}
	st, err := s.get(ctx, k, ns, req.GetName(), req.GetStale())
	if err != nil {
		return nil, toStatus(err)
	}
	if st == nil {
		return nil, toStatus(notFound(k, ns, req.GetName()))
	}
	env, err := s.pack(st.obj)
	return env, toStatus(err)
}

// updateOpts shape one update.
type updateOpts struct {
	// status replaces only the status.
	status bool
	dryRun bool
	// retryConflicts: the caller gave no resourceVersion, so a concurrent
	// write is not its conflict: re-read and redo.
	retryConflicts bool
}

// Update implements apiv1.APIServer.
func (s *Server) Update(ctx context.Context, req *apiv1.UpdateRequest) (*apiv1.Object, error) {
	return s.updateRPC(ctx, req, false)
}

// UpdateStatus implements apiv1.APIServer.
func (s *Server) UpdateStatus(ctx context.Context, req *apiv1.UpdateRequest) (*apiv1.Object, error) {
	return s.updateRPC(ctx, req, true)
}

func (s *Server) updateRPC(ctx context.Context, req *apiv1.UpdateRequest, status bool) (*apiv1.Object, error) {
	obj, k, err := s.unpack(req.GetObject())
	if err != nil {
		return nil, toStatus(err)
	}
	md := kinds.Meta(obj)
	md.Namespace = scope(k, md.Namespace)
	sub := ""
	if status {
		sub = "status"
	}
	if err := s.authorizeWrite(ctx, k, "update", sub, md.Namespace, md.Name); err != nil {
		return nil, toStatus(err)
	}
	out, _, err := s.update(ctx, k, obj, updateOpts{status: status, dryRun: req.GetDryRun(), retryConflicts: md.ResourceVersion == ""})
	if err != nil {
		return nil, toStatus(err)
	}
	env, err := s.pack(out)
	return env, toStatus(err)
}

// update replaces an existing object (or its status). It keeps the fields
// the server owns, bumps generation on a spec change, and reports whether
// anything changed (an identical update writes nothing).
func (s *Server) update(ctx context.Context, k *kinds.Kind, obj kinds.Object, opts updateOpts) (kinds.Object, bool, error) {
	md := kinds.Meta(obj)
	md.Namespace = scope(k, md.Namespace)
	if opts.status && !k.HasStatus() {
		return nil, false, fmt.Errorf("%w: %s has no status", ErrInvalid, k.Name)
	}
	want, err := parseRev("metadata.resourceVersion", md.ResourceVersion)
	if err != nil {
		return nil, false, err
	}
	key := k.Key(md.Namespace, md.Name)
	for attempt := 0; ; attempt++ {
		cur, err := s.mustGet(ctx, k, md.Namespace, md.Name)
		if err != nil {
			return nil, false, err
		}
		if want != 0 && want != cur.rev {
			return nil, false, conflictOn(k, md.Name, fmt.Errorf("resourceVersion %d is stale, current is %d", want, cur.rev))
		}
		next, err := s.prepareUpdate(k, cur.obj, obj, opts.status)
		if err != nil {
			return nil, false, err
		}
		if err := s.authorizeObject(ctx, k, "update", statusSub(opts.status), cur.obj, next); err != nil {
			return nil, false, err
		}
		// Most updates concern no admission plugin: no request is built.
		var r *admissionRequest
		if c := s.chain(k, opUpdate); !c.empty() {
			r = &admissionRequest{op: opUpdate, kind: k, obj: next, old: cur.obj}
			r.txn.objectKey = key
			if err := c.runAdmit(ctx, r); err != nil {
				return nil, false, err
			}
			if err := c.runValidate(ctx, r); err != nil {
				return nil, false, err
			}
			next = r.obj
		}
		if proto.Equal(withoutRV(cur.obj), withoutRV(next)) {
			return cur.obj, false, nil
		}
		if opts.dryRun {
			return next, true, nil
		}
		nmd := kinds.Meta(next)
		if nmd.DeletionTimestamp != "" && len(nmd.Finalizers) == 0 && !gracePending(next) && !k.Terminates() {
			// The last finalizer went: the deletion it held can finish.
			rev, err := s.remove(ctx, k, cur)
			if errors.Is(err, ErrConflict) && attempt < maxAdmissionRetries {
				continue
			}
			if err != nil {
				return nil, false, err
			}
			nmd.ResourceVersion = formatRev(rev)
			s.queueCascade(k, next, "Background")
			return next, true, nil
		}
		value, err := encode(next)
		if err != nil {
			return nil, false, err
		}
		var t *txnBuilder
		if r != nil {
			t = &r.txn
		} else {
			t = &txnBuilder{objectKey: key}
		}
		t.expect(key, cur.rev)
		t.put(key, value)
		rev, err := s.commit(ctx, t)
		if err != nil {
			if errors.Is(err, errRetry) && attempt < maxAdmissionRetries {
				continue
			}
			if errors.Is(err, ErrConflict) {
				if opts.retryConflicts && attempt < maxAdmissionRetries {
					continue
				}
				return nil, false, conflictOn(k, md.Name, err)
			}
			return nil, false, err
		}
		nmd.ResourceVersion = formatRev(rev)
		return next, true, nil
	}
}

// prepareUpdate builds the object to store from the current one and the
// caller's: server-owned metadata and (unless a status write) the status
// come from cur; generation is bumped when the spec changed.
func (s *Server) prepareUpdate(k *kinds.Kind, cur, in kinds.Object, status bool) (kinds.Object, error) {
	cmd := cur.GetMetadata()
	if status {
		next := codec.Clone(cur)
		kinds.CopyStatus(next, in)
		return next, nil
	}
	next := codec.Clone(in)
	k.Default(next)
	nmd := kinds.Meta(next)
	nmd.Uid = cmd.GetUid()
	nmd.CreationTimestamp = cmd.GetCreationTimestamp()
	nmd.DeletionTimestamp = cmd.GetDeletionTimestamp()
	nmd.DeletionGracePeriodSeconds = cmd.DeletionGracePeriodSeconds
	nmd.GenerateName = cmd.GetGenerateName()
	nmd.Generation = cmd.GetGeneration()
	kinds.CopyStatus(next, cur)
	k.PrepareForUpdate(cur, next)
	if !kinds.SpecEqual(cur, next) {
		nmd.Generation++
	}
	if errs := k.ValidateUpdate(cur, next); len(errs) > 0 {
		return nil, invalid(k, nmd.Name, errs)
	}
	if cmd.GetDeletionTimestamp() != "" {
		for _, f := range nmd.Finalizers {
			if !containsString(cmd.GetFinalizers(), f) {
				return nil, fmt.Errorf("%w: metadata.finalizers: %q may not be added to an object being deleted", ErrInvalid, f)
			}
		}
	}
	return next, nil
}

func withoutRV(obj kinds.Object) kinds.Object {
	c := codec.Clone(obj)
	kinds.Meta(c).ResourceVersion = ""
	return c
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// Patch implements apiv1.APIServer with RFC 7386 JSON merge patch.
func (s *Server) Patch(ctx context.Context, req *apiv1.PatchRequest) (*apiv1.Object, error) {
	k, err := s.lookup(req.GetKind())
	if err != nil {
		return nil, toStatus(err)
	}
	ns := scope(k, req.GetNamespace())
	sub := ""
	if req.GetStatus() {
		sub = "status"
	}
	if err := s.authorizeWrite(ctx, k, "patch", sub, ns, req.GetName()); err != nil {
		return nil, toStatus(err)
	}
	out, err := s.patch(ctx, k, ns, req.GetName(), req.GetPatch(), updateOpts{status: req.GetStatus(), dryRun: req.GetDryRun()})
	if err != nil {
		return nil, toStatus(err)
	}
	env, err := s.pack(out)
	return env, toStatus(err)
}

func (s *Server) patch(ctx context.Context, k *kinds.Kind, ns, name string, patch []byte, opts updateOpts) (kinds.Object, error) {
	if err := checkPatchUTF8(patch); err != nil {
		return nil, err
	}
	var p any
	if err := json.Unmarshal(patch, &p); err != nil {
		return nil, fmt.Errorf("%w: patch is not JSON: %v", ErrInvalid, err)
	}
	pm, ok := p.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: a merge patch must be a JSON object", ErrInvalid)
	}
	// A patch that names a resourceVersion is conditional on it; otherwise
	// it applies to whatever is current, re-read on a concurrent write.
	_, pinned := jsonPath(pm, "metadata", "resourceVersion")
	opts.retryConflicts = false
	for attempt := 0; ; attempt++ {
		cur, err := s.mustGet(ctx, k, ns, name)
		if err != nil {
			return nil, err
		}
		next, err := applyPatchTo(k, cur.obj, pm)
		if err != nil {
			return nil, err
		}
		if err := checkObjectUTF8(k, next); err != nil {
			return nil, err
		}
		nmd := kinds.Meta(next)
		if nmd.Name != name || scope(k, nmd.Namespace) != ns {
			return nil, fmt.Errorf("%w: a patch may not change metadata.name or metadata.namespace", ErrInvalid)
		}
		out, _, err := s.update(ctx, k, next, opts)
		if errors.Is(err, ErrConflict) && !pinned && attempt < maxAdmissionRetries {
			continue
		}
		return out, err
	}
}

// applyPatchTo merges a patch into obj's Kubernetes JSON and decodes the
// result as a new object of kind k.
func applyPatchTo(k *kinds.Kind, obj kinds.Object, patch map[string]any) (kinds.Object, error) {
	js, err := manifest.MarshalJSON(obj)
	if err != nil {
		return nil, err
	}
	var doc any
	if err := json.Unmarshal(js, &doc); err != nil {
		return nil, fmt.Errorf("decode %s JSON: %w", k.Name, err)
	}
	merged, err := json.Marshal(MergePatch(doc, patch))
	if err != nil {
		return nil, fmt.Errorf("encode patched %s: %w", k.Name, err)
	}
	next := k.New()
	if err := manifest.UnmarshalJSON(merged, next); err != nil {
		return nil, fmt.Errorf("%w: patched object: %s", ErrInvalid, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return next, nil
}

// MergePatch applies an RFC 7386 JSON merge patch to a decoded JSON value:
// objects merge key by key, null deletes, anything else replaces.
func MergePatch(target, patch any) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	tm, ok := target.(map[string]any)
	if !ok {
		tm = map[string]any{}
	}
	out := make(map[string]any, len(tm))
	for k, v := range tm {
		out[k] = v
	}
	for k, v := range pm {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = MergePatch(out[k], v)
	}
	return out
}

func jsonPath(m map[string]any, path ...string) (any, bool) {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}
