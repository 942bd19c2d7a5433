package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/codec"
)

// Object is any API object (every kind's generated message).
type Object interface {
	proto.Message
	GetMetadata() *apiv1.ObjectMeta
}

// KindOf is the kind name of an object: its message name ("Pod").
func KindOf(obj proto.Message) string { return string(obj.ProtoReflect().Descriptor().Name()) }

// Pack wraps obj in the API envelope.
func Pack(obj Object) (*apiv1.Object, error) {
	a, err := codec.Pack(obj)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", KindOf(obj), err)
	}
	return &apiv1.Object{Kind: KindOf(obj), Object: a}, nil
}

// Unpack opens an envelope into the kind's generated message.
func Unpack(env *apiv1.Object) (Object, error) {
	if env.GetObject() == nil {
		return nil, errors.New("empty object envelope")
	}
	m, err := codec.Unpack(env.GetObject())
	if err != nil {
		return nil, fmt.Errorf("unpack %s: %w", env.GetObject().GetTypeUrl(), err)
	}
	obj, ok := m.(Object)
	if !ok {
		return nil, fmt.Errorf("unpack: %T is not an API object", m)
	}
	return obj, nil
}

// Error predicates over the API's gRPC codes: they decide by code, never
// by message text.
func IsNotFound(err error) bool      { return status.Code(err) == codes.NotFound }
func IsAlreadyExists(err error) bool { return status.Code(err) == codes.AlreadyExists }
func IsConflict(err error) bool      { return status.Code(err) == codes.Aborted }
func IsInvalid(err error) bool       { return status.Code(err) == codes.InvalidArgument }

// IsForbidden: the server's authorizer refused the caller (PermissionDenied).
func IsForbidden(err error) bool { return status.Code(err) == codes.PermissionDenied }

// IsQuotaExceeded: a ResourceQuota or LimitRange refused the object
// (ResourceExhausted).
func IsQuotaExceeded(err error) bool { return status.Code(err) == codes.ResourceExhausted }

// IsNotAdmitted: admission refused a write the caller may make: over a
// quota or limit (ResourceExhausted), or into a namespace being deleted
// (FailedPrecondition), as a controller's ReplicaFailure reports.
func IsNotAdmitted(err error) bool {
	c := status.Code(err)
	return c == codes.ResourceExhausted || c == codes.FailedPrecondition
}

// IsTooOld: a watch's resourceVersion is older than the history: re-list.
func IsTooOld(err error) bool { return status.Code(err) == codes.OutOfRange }

// IsUnavailable: no server could answer (down, or without quorum).
func IsUnavailable(err error) bool { return status.Code(err) == codes.Unavailable }

func (c *Client) defaultNS(ns string) string {
	if ns == "" {
		return c.opts.Namespace
	}
	return ns
}

func unpackTo[T Object](env *apiv1.Object, err error) (T, error) {
	var zero T
	if err != nil {
		return zero, err
	}
	obj, err := Unpack(env)
	if err != nil {
		return zero, err
	}
	t, ok := obj.(T)
	if !ok {
		return zero, fmt.Errorf("server returned %s, want %s", KindOf(obj), KindOf(zero))
	}
	return t, nil
}

// Create creates obj (namespace defaults to the client's) and returns it as stored.
func Create[T Object](ctx context.Context, c *Client, obj T) (T, error) {
	env, err := Pack(obj)
	if err != nil {
		var zero T
		return zero, err
	}
	if obj.GetMetadata() == nil {
		var zero T
		return zero, fmt.Errorf("create %s: metadata is required", KindOf(obj))
	}
	out, err := unpackTo[T](c.api.Create(ctx, &apiv1.CreateRequest{Object: env}))
	if id := obj.GetMetadata().GetAnnotations()[CreateIDAnnotation]; id != "" && IsOutcomeUnknown(err) {
		return resolveCreate(ctx, c, env, obj, id, err)
	}
	return out, err
}

// CreateIDAnnotation is a create's idempotency key. A Create whose answer
// was lost (ErrOutcomeUnknown) is sent again when the object carries it;
// if the name is then taken by an object with the same key, that object is
// the caller's own create and is returned instead of AlreadyExists. Any
// unique value will do (a UUID); it stays on the object.
const CreateIDAnnotation = "client.skiff.io/create-id"

// resolveCreate settles a create whose outcome is unknown by its key.
func resolveCreate[T Object](ctx context.Context, c *Client, env *apiv1.Object, obj T, id string, cause error) (T, error) {
	var zero T
	for attempt := 0; attempt < c.opts.MaxAttempts; attempt++ {
		out, err := unpackTo[T](c.api.Create(ctx, &apiv1.CreateRequest{Object: env}))
		switch {
		case err == nil:
			return out, nil
		case IsAlreadyExists(err):
			md := obj.GetMetadata()
			cur, gerr := Get[T](ctx, c, md.GetNamespace(), md.GetName())
			if gerr != nil {
				return zero, &OutcomeUnknownError{Server: "any server", Cause: gerr}
			}
			if cur.GetMetadata().GetAnnotations()[CreateIDAnnotation] == id {
				return cur, nil
			}
			return zero, err // taken by someone else's create
		case IsOutcomeUnknown(err):
			cause = err
			continue
		default:
			return zero, err
		}
	}
	return zero, cause
}

// Get reads one object of T's kind: Get[*apiv1.Pod](ctx, c, "default", "web").
func Get[T Object](ctx context.Context, c *Client, ns, name string) (T, error) {
	var zero T
	return unpackTo[T](c.api.Get(ctx, &apiv1.GetRequest{Kind: KindOf(zero), Namespace: c.defaultNS(ns), Name: name}))
}

// Update writes obj; with metadata.resourceVersion set it fails with a
// conflict (IsConflict) if the object changed since.
func Update[T Object](ctx context.Context, c *Client, obj T) (T, error) {
	env, err := Pack(obj)
	if err != nil {
		var zero T
		return zero, err
	}
	return unpackTo[T](c.api.Update(ctx, &apiv1.UpdateRequest{Object: env}))
}

// UpdateStatus writes only obj's status.
func UpdateStatus[T Object](ctx context.Context, c *Client, obj T) (T, error) {
	env, err := Pack(obj)
	if err != nil {
		var zero T
		return zero, err
	}
	return unpackTo[T](c.api.UpdateStatus(ctx, &apiv1.UpdateRequest{Object: env}))
}

// CreateMany creates objs in one call, each on its own. It returns the
// created objects and an error per object, in order (nil: created); err is
// for the call as a whole. A failed object's entry in out is nil.
func CreateMany[T Object](ctx context.Context, c *Client, objs []T) (out []T, errs []error, err error) {
	results, err := createMany(ctx, c, objs)
	if err != nil {
		return nil, nil, err
	}
	out, errs = make([]T, len(objs)), make([]error, len(objs))
	for i, r := range results {
		if errs[i] = createResultError(r); errs[i] == nil {
			out[i], errs[i] = unpackTo[T](r.GetObject(), nil)
		}
	}
	return out, errs, nil
}

// CreateManyVersions is CreateMany for callers that need only the created
// objects' resourceVersions (a controller learns the objects from its
// informer): nothing is decoded.
func CreateManyVersions[T Object](ctx context.Context, c *Client, objs []T) (versions []string, errs []error, err error) {
	results, err := createMany(ctx, c, objs)
	if err != nil {
		return nil, nil, err
	}
	versions, errs = make([]string, len(objs)), make([]error, len(objs))
	for i, r := range results {
		if errs[i] = createResultError(r); errs[i] == nil {
			versions[i] = r.GetResourceVersion()
		}
	}
	return versions, errs, nil
}

// createMany sends objs (see resendNotApplied).
func createMany[T Object](ctx context.Context, c *Client, objs []T) ([]*apiv1.CreateResult, error) {
	envs := make([]*apiv1.Object, len(objs))
	for i, obj := range objs {
		env, err := Pack(obj)
		if err != nil {
			return nil, err
		}
		envs[i] = env
	}
	return resendNotApplied(ctx, c.api.CreateMany, envs, retryPolicy{
		attempts: c.opts.MaxAttempts, pause: c.opts.RetryBackoff, maxPause: c.opts.MaxBackoff,
		next: func() { c.current.Add(1) }, // the next server may have the leader this one lacked
	})
}

// retryPolicy is how often and how fast a batch call's items are sent
// again, and how to move to the next server.
type retryPolicy struct {
	attempts        int
	pause, maxPause time.Duration
	next            func()
}

type createManyCall func(context.Context, *apiv1.CreateManyRequest, ...grpc.CallOption) (*apiv1.CreateManyResponse, error)

// resendNotApplied sends envs in one CreateMany, then sends again (to the
// next server, after a backoff) the objects whose results say they were
// certainly not applied, as a single Create is retried; other results are
// final. The results are in the order of envs.
func resendNotApplied(ctx context.Context, send createManyCall, envs []*apiv1.Object, p retryPolicy) ([]*apiv1.CreateResult, error) {
	results := make([]*apiv1.CreateResult, len(envs))
	pending := make([]int, len(envs)) // indexes into envs still to send
	for i := range pending {
		pending[i] = i
	}
	pause := p.pause
	for attempt := 1; ; attempt++ {
		req := &apiv1.CreateManyRequest{Objects: make([]*apiv1.Object, len(pending))}
		for j, i := range pending {
			req.Objects[j] = envs[i]
		}
		resp, err := send(ctx, req)
		if err != nil {
			return nil, err
		}
		if len(resp.GetResults()) != len(pending) {
			return nil, fmt.Errorf("create many: server answered %d results for %d objects", len(resp.GetResults()), len(pending))
		}
		var again []int
		for j, r := range resp.GetResults() {
			results[pending[j]] = r
			if itemNotApplied(r) {
				again = append(again, pending[j])
			}
		}
		if len(again) == 0 || attempt >= p.attempts {
			return results, nil
		}
		pending = again
		if p.next != nil {
			p.next()
		}
		select {
		case <-ctx.Done():
			return results, nil
		case <-time.After(pause):
		}
		pause = min(2*pause, p.maxPause)
	}
}

// createResultError is a CreateMany item's status as an error, with its
// details (nil: created).
func createResultError(r *apiv1.CreateResult) error {
	if codes.Code(r.GetCode()) == codes.OK {
		return nil
	}
	return status.FromProto(&spb.Status{Code: r.GetCode(), Message: r.GetMessage(), Details: r.GetDetails()}).Err()
}

// itemNotApplied: the server says it certainly did not apply this item.
func itemNotApplied(r *apiv1.CreateResult) bool {
	err := createResultError(r)
	return err != nil && classify(err, true, true) == retry
}

// resultError is a per-item result of a batch call as an error (nil: OK).
func resultError(code int32, msg string) error {
	if codes.Code(code) == codes.OK {
		return nil
	}
	return status.Error(codes.Code(code), msg)
}

// Bind assigns pods to nodes in one call. The returned errors are per
// binding, in order (nil: bound); err is for the call as a whole.
func Bind(ctx context.Context, c *Client, bindings []*apiv1.Binding) ([]error, error) {
	resp, err := c.api.Bind(ctx, &apiv1.BindRequest{Bindings: bindings})
	if err != nil {
		return nil, err
	}
	if len(resp.GetResults()) != len(bindings) {
		return nil, fmt.Errorf("bind: server answered %d results for %d bindings", len(resp.GetResults()), len(bindings))
	}
	out := make([]error, len(bindings))
	for i, r := range resp.GetResults() {
		out[i] = resultError(r.GetCode(), r.GetMessage())
	}
	return out, nil
}

// Patch applies a JSON merge patch to an object of T's kind.
func Patch[T Object](ctx context.Context, c *Client, ns, name string, patch []byte) (T, error) {
	var zero T
	return unpackTo[T](c.api.Patch(ctx, &apiv1.PatchRequest{Kind: KindOf(zero), Namespace: c.defaultNS(ns), Name: name, Patch: patch}))
}

// ListOptions select the objects of a List or Watch.
type ListOptions struct {
	// Namespace: "" means all namespaces (AllNamespaces is then implied).
	Namespace     string
	LabelSelector string
	FieldSelector string
	// Stale lets the answering node serve from its own state.
	Stale bool
}

// List reads all objects of T's kind matching opts (every page), and the
// resourceVersion to watch from.
func List[T Object](ctx context.Context, c *Client, opts ListOptions) ([]T, string, error) {
	var zero T
	envs, rv, err := c.ListEnvelopes(ctx, KindOf(zero), opts)
	if err != nil {
		return nil, "", err
	}
	out := make([]T, 0, len(envs))
	for _, env := range envs {
		t, err := unpackTo[T](env, nil)
		if err != nil {
			return nil, "", err
		}
		out = append(out, t)
	}
	return out, rv, nil
}

// ListEnvelopes reads all objects of a kind (by name), page by page.
func (c *Client) ListEnvelopes(ctx context.Context, kind string, opts ListOptions) ([]*apiv1.Object, string, error) {
	var out []*apiv1.Object
	req := &apiv1.ListRequest{Kind: kind, Namespace: opts.Namespace, LabelSelector: opts.LabelSelector,
		FieldSelector: opts.FieldSelector, Limit: 1000, Stale: opts.Stale}
	var rv string
	for {
		list, err := c.api.List(ctx, req)
		if err != nil {
			return nil, "", err
		}
		if rv == "" {
			rv = list.GetMetadata().GetResourceVersion()
		}
		out = append(out, list.GetItems()...)
		if list.GetMetadata().GetContinue() == "" {
			return out, rv, nil
		}
		req.Continue = list.GetMetadata().GetContinue()
	}
}

// DeleteOptions shape a Delete.
type DeleteOptions struct {
	// GracePeriodSeconds: nil for the object's default; 0 for at once.
	GracePeriodSeconds *int64
	// PropagationPolicy: "Background" (default), "Foreground" or "Orphan".
	PropagationPolicy string
	// Preconditions: delete only this uid / resourceVersion.
	UID, ResourceVersion string
}

// Delete deletes an object of a kind (by name). removed is false when the
// object stays marked for deletion (grace period, finalizers).
func (c *Client) Delete(ctx context.Context, kind, ns, name string, opts DeleteOptions) (obj Object, removed bool, err error) {
	req := &apiv1.DeleteRequest{Kind: kind, Namespace: c.defaultNS(ns), Name: name,
		GracePeriodSeconds: opts.GracePeriodSeconds, PropagationPolicy: opts.PropagationPolicy}
	if opts.UID != "" || opts.ResourceVersion != "" {
		req.Preconditions = &apiv1.Preconditions{Uid: opts.UID, ResourceVersion: opts.ResourceVersion}
	}
	resp, err := c.api.Delete(ctx, req)
	if IsOutcomeUnknown(err) {
		return c.resolveDelete(ctx, req, err)
	}
	if err != nil {
		return nil, false, err
	}
	obj, err = Unpack(resp.GetObject())
	return obj, resp.GetRemoved(), err
}

// resolveDelete settles a delete whose answer was lost (a leadership
// change while it committed, a broken connection): unlike a create or a
// compare-and-set, a delete can be told from the object as it is now, so
// the caller gets the outcome instead of ErrOutcomeUnknown. The object
// gone: the delete took effect (removed, no object). Marked for deletion:
// it took effect and the object waits for its grace period or finalizers.
// Still there and not marked: it was not applied, and is sent again, bound
// (when the caller gave no uid precondition) to the uid just read, so the
// retry deletes that object and never one made under the same name after
// it. What stays open is the window kubectl has too: a delete applied, then
// a new object of the same name made before this read; the read sees that
// one unmarked and deletes it.
func (c *Client) resolveDelete(ctx context.Context, req *apiv1.DeleteRequest, cause error) (Object, bool, error) {
	for attempt := 0; attempt < c.opts.MaxAttempts; attempt++ {
		env, err := c.api.Get(ctx, &apiv1.GetRequest{Kind: req.GetKind(), Namespace: req.GetNamespace(), Name: req.GetName()})
		if IsNotFound(err) {
			return nil, true, nil
		}
		if err != nil {
			return nil, false, cause // the read cannot tell either
		}
		cur, err := Unpack(env)
		if err != nil {
			return nil, false, err
		}
		md := cur.GetMetadata()
		if md.GetDeletionTimestamp() != "" {
			return cur, false, nil
		}
		if uid := req.GetPreconditions().GetUid(); uid != "" && uid != md.GetUid() {
			// The object the caller meant is gone (the delete took
			// effect); this is another one of the same name.
			return nil, true, nil
		}
		again := proto.Clone(req).(*apiv1.DeleteRequest)
		if again.Preconditions == nil {
			again.Preconditions = &apiv1.Preconditions{}
		}
		if again.Preconditions.Uid == "" {
			again.Preconditions.Uid = md.GetUid()
		}
		resp, err := c.api.Delete(ctx, again)
		switch {
		case err == nil:
			obj, err := Unpack(resp.GetObject())
			return obj, resp.GetRemoved(), err
		case IsNotFound(err):
			return nil, true, nil
		case IsOutcomeUnknown(err):
			cause = err
			continue
		default:
			return nil, false, err
		}
	}
	return nil, false, cause
}

// Apply creates or declaratively updates obj by name. An empty namespace
// of a namespaced kind means "default" (the client cannot tell kinds'
// scope, so it does not fill in its own default here).
func (c *Client) Apply(ctx context.Context, obj Object) (Object, apiv1.ApplyResponse_Result, error) {
	env, err := Pack(obj)
	if err != nil {
		return nil, 0, err
	}
	resp, err := c.api.Apply(ctx, &apiv1.ApplyRequest{Object: env})
	if err != nil {
		return nil, 0, err
	}
	out, err := Unpack(resp.GetObject())
	return out, resp.GetResult(), err
}

// Int64 returns a pointer to v (for DeleteOptions.GracePeriodSeconds).
func Int64(v int64) *int64 { return &v }

// Revision parses a resourceVersion; 0 if empty or malformed.
func Revision(rv string) int64 {
	n, _ := strconv.ParseInt(rv, 10, 64)
	return n
}
