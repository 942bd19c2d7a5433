package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// The pods a stream verb (logs, exec, attach, port-forward, cp) reaches,
// named as kubectl names them: NAME or pod/NAME, or an object that owns
// pods (deploy/NAME, rs/NAME, job/NAME, sts/NAME, ds/NAME …), whose pods
// are found through their owner references.

// podsOf returns the pods arg names, oldest first.
func (o *options) podsOf(ctx context.Context, c *client.Client, ns, arg string) ([]*apiv1.Pod, error) {
	kind, name, found := strings.Cut(arg, "/")
	if !found {
		kind, name = "pod", arg
	}
	if name == "" {
		return nil, fmt.Errorf("%q: name is required (e.g. pod/web-1 or deploy/web)", arg)
	}
	k, err := o.lookup(kind)
	if err != nil {
		return nil, err
	}
	if k.Name == "Pod" {
		p, err := client.Get[*apiv1.Pod](ctx, c, ns, name)
		if err != nil {
			return nil, err
		}
		return []*apiv1.Pod{p}, nil
	}
	env, err := c.API().Get(ctx, &apiv1.GetRequest{Kind: k.Name, Namespace: ns, Name: name})
	if err != nil {
		return nil, err
	}
	owner, err := client.Unpack(env)
	if err != nil {
		return nil, err
	}
	owners := map[string]bool{owner.GetMetadata().GetUid(): true}
	// One level of owned controllers: a Deployment's ReplicaSets, a
	// CronJob's Jobs.
	rss, _, err := client.List[*apiv1.ReplicaSet](ctx, c, client.ListOptions{Namespace: ns})
	if err != nil {
		return nil, err
	}
	for _, rs := range rss {
		if ownedBy(rs.GetMetadata(), owners) {
			owners[rs.GetMetadata().GetUid()] = true
		}
	}
	jobs, _, err := client.List[*apiv1.Job](ctx, c, client.ListOptions{Namespace: ns})
	if err != nil {
		return nil, err
	}
	for _, j := range jobs {
		if ownedBy(j.GetMetadata(), owners) {
			owners[j.GetMetadata().GetUid()] = true
		}
	}
	pods, _, err := client.List[*apiv1.Pod](ctx, c, client.ListOptions{Namespace: ns})
	if err != nil {
		return nil, err
	}
	var out []*apiv1.Pod
	for _, p := range pods {
		if ownedBy(p.GetMetadata(), owners) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s/%s has no pods", k.Singular, name)
	}
	sortPods(out)
	return out, nil
}

func ownedBy(m *apiv1.ObjectMeta, owners map[string]bool) bool {
	return slices.ContainsFunc(m.GetOwnerReferences(), func(r *apiv1.OwnerReference) bool { return owners[r.GetUid()] })
}

// sortPods puts running pods first, then the oldest.
func sortPods(pods []*apiv1.Pod) {
	sort.SliceStable(pods, func(i, j int) bool {
		ri, rj := pods[i].GetStatus().GetPhase() == "Running", pods[j].GetStatus().GetPhase() == "Running"
		if ri != rj {
			return ri
		}
		return pods[i].GetMetadata().GetCreationTimestamp() < pods[j].GetMetadata().GetCreationTimestamp() // RFC 3339 in UTC sorts as text
	})
}

// onePod is the pod a single-pod verb uses: kubectl's "Found N pods,
// using pod/NAME" when arg names several.
func (o *options) onePod(ctx context.Context, c *client.Client, ns, arg string) (*apiv1.Pod, error) {
	pods, err := o.podsOf(ctx, c, ns, arg)
	if err != nil {
		return nil, err
	}
	if len(pods) > 1 {
		fmt.Fprintf(o.streams.Err, "Found %d pods, using pod/%s\n", len(pods), pods[0].GetMetadata().GetName())
	}
	return pods[0], nil
}

// defaultContainer is kubectl's choice when -c is not given: the
// container the kubectl.kubernetes.io/default-container annotation names,
// else the first, saying so when there are several.
func defaultContainer(p *apiv1.Pod, stderr io.Writer) string {
	cs := p.GetSpec().GetContainers()
	if len(cs) == 0 {
		return ""
	}
	if d := p.GetMetadata().GetAnnotations()["kubectl.kubernetes.io/default-container"]; d != "" {
		return d
	}
	if len(cs) > 1 {
		names := make([]string, len(cs))
		for i, c := range cs {
			names[i] = c.GetName()
		}
		fmt.Fprintf(stderr, "Defaulted container %q out of: %s\n", cs[0].GetName(), strings.Join(names, ", "))
	}
	return cs[0].GetName()
}
