package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/controlplane/controllers/deployment"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
)

// An action is a button on a page: one API write (or a read then a write)
// made as the session's caller. Adding one is a function and a line here.
type actionFunc func(ctx context.Context, api apiv1.APIClient, ns, name string, form map[string][]string) (string, error)

var actions = map[string]actionFunc{
	"scale":   scaleDeployment,
	"restart": restartDeployment,
	"undo":    retryConflicts(undoDeployment),
}

// errBadInput: a form field the action cannot use.
var errBadInput = errors.New("bad input")

// RestartedAtAnnotation is what a restart sets on the pod template (the
// annotation kubectl uses), so the Deployment rolls out new pods.
const RestartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"

func (s *Server) action(w http.ResponseWriter, r *http.Request) {
	g, ok := s.session(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := checkCSRF(r, g); err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	verb := r.PathValue("verb")
	do, ok := actions[verb]
	if !ok {
		http.Error(w, fmt.Sprintf("no action %q", verb), http.StatusNotFound)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ns, name := r.PostForm.Get("ns"), r.PostForm.Get("name")
	if ns == "" || name == "" {
		http.Error(w, fmt.Sprintf("%s: the form needs ns and name", verb), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(asCaller(r.Context(), g.caller), 15*time.Second)
	defer cancel()
	msg, err := do(ctx, s.cfg.API, ns, name, r.PostForm)
	if err != nil {
		code := httpStatus(err)
		switch {
		case errors.Is(err, errBadInput):
			code = http.StatusBadRequest
		case errors.Is(err, deployment.ErrNoRevision):
			code = http.StatusConflict
		}
		s.log.Info("dashboard action failed", "user", g.caller.User, "action", verb, "namespace", ns, "name", name, "err", err)
		http.Error(w, fmt.Sprintf("%s deployment %s/%s: %s", verb, ns, name, apiMessage(err)), code)
		return
	}
	s.log.Info("dashboard action", "user", g.caller.User, "action", verb, "namespace", ns, "name", name)
	fmt.Fprintln(w, msg)
}

// retryConflicts retries a read-then-write action whose write met a newer
// version (the controller updates status all the time): a person pressing
// a button means "do it to what is there now".
func retryConflicts(f actionFunc) actionFunc {
	return func(ctx context.Context, api apiv1.APIClient, ns, name string, form map[string][]string) (string, error) {
		for attempt := 1; ; attempt++ {
			msg, err := f(ctx, api, ns, name, form)
			if status.Code(err) != codes.Aborted || attempt == 5 {
				return msg, err
			}
		}
	}
}

func scaleDeployment(ctx context.Context, api apiv1.APIClient, ns, name string, form map[string][]string) (string, error) {
	raw := ""
	if v := form["replicas"]; len(v) == 1 {
		raw = v[0]
	}
	n, err := strconv.ParseInt(raw, 10, 32)
	if err != nil || n < 0 {
		return "", fmt.Errorf("%w: replicas: want a whole number ≥ 0, got %q", errBadInput, raw)
	}
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"replicas": n}})
	if _, err := api.Patch(ctx, &apiv1.PatchRequest{Kind: "Deployment", Namespace: ns, Name: name, Patch: patch}); err != nil {
		return "", err
	}
	return fmt.Sprintf("deployment %s/%s scaled to %d", ns, name, n), nil
}

func restartDeployment(ctx context.Context, api apiv1.APIClient, ns, name string, _ map[string][]string) (string, error) {
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{RestartedAtAnnotation: time.Now().UTC().Format(time.RFC3339)}}}}})
	if _, err := api.Patch(ctx, &apiv1.PatchRequest{Kind: "Deployment", Namespace: ns, Name: name, Patch: patch}); err != nil {
		return "", err
	}
	return fmt.Sprintf("deployment %s/%s restarted", ns, name), nil
}

// undoDeployment rolls the template back to the revision before the
// current one, as `ctl rollout undo` does (deployment.Undo, which takes a
// *client.Client; this is the same steps on the caller's API).
func undoDeployment(ctx context.Context, api apiv1.APIClient, ns, name string, _ map[string][]string) (string, error) {
	env, err := api.Get(ctx, &apiv1.GetRequest{Kind: "Deployment", Namespace: ns, Name: name})
	if err != nil {
		return "", err
	}
	o, err := client.Unpack(env)
	if err != nil {
		return "", err
	}
	d, ok := o.(*apiv1.Deployment)
	if !ok {
		return "", fmt.Errorf("get deployment %s/%s: got a %T", ns, name, o)
	}
	l, err := api.List(ctx, &apiv1.ListRequest{Kind: "ReplicaSet", Namespace: ns})
	if err != nil {
		return "", err
	}
	var sets []*apiv1.ReplicaSet
	for _, env := range l.GetItems() {
		if o, err := client.Unpack(env); err == nil {
			if rs, ok := o.(*apiv1.ReplicaSet); ok {
				sets = append(sets, rs)
			}
		}
	}
	cur := deployment.Revision(d.GetMetadata())
	var target *apiv1.ReplicaSet
	for _, rs := range deployment.OwnedReplicaSets(d, sets) {
		if rev := deployment.Revision(rs.GetMetadata()); rev < cur && (target == nil || rev > deployment.Revision(target.GetMetadata())) {
			target = rs
		}
	}
	if target == nil {
		return "", fmt.Errorf("%w: no earlier revision to go back to", deployment.ErrNoRevision)
	}
	tmpl := deployment.StripHash(target.GetSpec().GetTemplate())
	if proto.Equal(tmpl, deployment.StripHash(d.GetSpec().GetTemplate())) {
		return fmt.Sprintf("deployment %s/%s already has the template of revision %d", ns, name, deployment.Revision(target.GetMetadata())), nil
	}
	next := codec.Clone(d)
	next.Spec.Template = tmpl
	if cause := target.GetMetadata().GetAnnotations()[deployment.ChangeCauseAnnotation]; cause != "" {
		if next.Metadata.Annotations == nil {
			next.Metadata.Annotations = map[string]string{}
		}
		next.Metadata.Annotations[deployment.ChangeCauseAnnotation] = cause
	}
	packed, err := client.Pack(next)
	if err != nil {
		return "", err
	}
	if _, err := api.Update(ctx, &apiv1.UpdateRequest{Object: packed}); err != nil {
		return "", err
	}
	return fmt.Sprintf("deployment %s/%s rolled back to revision %d", ns, name, deployment.Revision(target.GetMetadata())), nil
}
