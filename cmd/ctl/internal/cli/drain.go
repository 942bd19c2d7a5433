package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// cordon, uncordon and drain, as kubectl's: drain cordons the node, then
// evicts its pods through the API's Evict call, which honours
// PodDisruptionBudgets (a refused eviction is retried until --timeout).

func (o *options) cordonCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "cordon NODE",
		Short:             "Mark a node unschedulable",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: o.completeFirst("Node"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				return o.setUnschedulable(ctx, c, args[0], true)
			})
		},
	}
}

func (o *options) uncordonCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "uncordon NODE",
		Short:             "Mark a node schedulable again",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: o.completeFirst("Node"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				return o.setUnschedulable(ctx, c, args[0], false)
			})
		},
	}
}

// withClient runs fn with a connected client and the request timeout.
func (o *options) withClient(cmd *cobra.Command, fn func(ctx context.Context, c *client.Client) error) error {
	c, err := o.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := o.ctx(cmd.Context())
	defer cancel()
	return fn(ctx, c)
}

// completeFirst completes names of kind for the first argument only.
func (o *options) completeFirst(kind string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return o.namesOf(cmd.Context(), kind, prefix), cobra.ShellCompDirectiveNoFileComp
	}
}

func (o *options) setUnschedulable(ctx context.Context, c *client.Client, node string, on bool) error {
	n, err := client.Get[*apiv1.Node](ctx, c, "", node)
	if err != nil {
		return err
	}
	verb := map[bool]string{true: "cordoned", false: "uncordoned"}[on]
	if n.GetSpec().GetUnschedulable() == on {
		fmt.Fprintf(o.streams.Out, "node/%s already %s\n", node, verb)
		return nil
	}
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"unschedulable": on}})
	if _, err := c.API().Patch(ctx, &apiv1.PatchRequest{Kind: "Node", Name: node, Patch: patch}); err != nil {
		return err
	}
	fmt.Fprintf(o.streams.Out, "node/%s %s\n", node, verb)
	return nil
}

type drainOptions struct {
	ignoreDaemonSets   bool
	deleteEmptyDirData bool
	force              bool
	gracePeriod        int
	timeout            time.Duration
	retryInterval      time.Duration
	podSelector        string
}

func (o *options) drainCmd() *cobra.Command {
	d := &drainOptions{}
	cmd := &cobra.Command{
		Use:   "drain NODE",
		Short: "Cordon a node and evict its pods (honouring PodDisruptionBudgets)",
		Long: `Drain marks the node unschedulable, then evicts every pod on it through
the API's eviction call: a pod whose PodDisruptionBudget allows no
disruption now is retried until its budget allows it or --timeout passes.
DaemonSet pods are refused unless --ignore-daemonsets (then left running),
pods with emptyDir volumes unless --delete-emptydir-data, and pods no
controller re-creates unless --force.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: o.completeFirst("Node"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.connect()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			if d.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, d.timeout)
				defer cancel()
			}
			rctx, cancel := o.ctx(ctx)
			err = o.setUnschedulable(rctx, c, args[0], true)
			cancel()
			if err != nil {
				return err
			}
			if err := o.drain(ctx, c, args[0], d); err != nil {
				return err
			}
			fmt.Fprintf(o.streams.Out, "node/%s drained\n", args[0])
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&d.ignoreDaemonSets, "ignore-daemonsets", false, "leave DaemonSet-managed pods running")
	f.BoolVar(&d.deleteEmptyDirData, "delete-emptydir-data", false, "evict pods with emptyDir volumes (their data is lost)")
	f.BoolVar(&d.force, "force", false, "also evict pods no controller manages (they are not re-created)")
	f.IntVar(&d.gracePeriod, "grace-period", -1, "seconds each pod gets to stop; negative means the pod's own terminationGracePeriodSeconds")
	f.DurationVar(&d.timeout, "timeout", 0, "give up after this long (0: wait as long as it takes)")
	f.StringVarP(&d.podSelector, "pod-selector", "", "", "evict only pods matching this label selector")
	f.DurationVar(&d.retryInterval, "eviction-retry-interval", 5*time.Second, "pause before an eviction a budget refused is tried again")
	_ = f.MarkHidden("eviction-retry-interval")
	return cmd
}

// drain evicts the node's pods and waits until they are gone.
func (o *options) drain(ctx context.Context, c *client.Client, node string, d *drainOptions) error {
	lctx, cancel := o.ctx(ctx)
	pods, _, err := client.List[*apiv1.Pod](lctx, c, client.ListOptions{FieldSelector: "spec.nodeName=" + node, LabelSelector: d.podSelector})
	cancel()
	if err != nil {
		return err
	}
	evict, err := d.filter(o, pods)
	if err != nil {
		return err
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, p := range evict {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := o.evictAndWait(ctx, c, p, d); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("pod %s/%s: %w", p.GetMetadata().GetNamespace(), p.GetMetadata().GetName(), err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("unable to drain node %q: %w", node, errors.Join(errs...))
	}
	return nil
}

// filter decides which pods drain evicts, refusing (in one error listing
// them all) those a flag must allow, as kubectl does.
func (d *drainOptions) filter(o *options, pods []*apiv1.Pod) ([]*apiv1.Pod, error) {
	var evict []*apiv1.Pod
	var daemons, emptyDirs, unmanaged, ignored []string
	for _, p := range pods {
		md := p.GetMetadata()
		name := md.GetNamespace() + "/" + md.GetName()
		if ph := p.GetStatus().GetPhase(); ph == "Succeeded" || ph == "Failed" {
			evict = append(evict, p)
			continue
		}
		var ctrl *apiv1.OwnerReference
		for _, r := range md.GetOwnerReferences() {
			if r.GetController() {
				ctrl = r
			}
		}
		if ctrl != nil && ctrl.GetKind() == "DaemonSet" {
			if d.ignoreDaemonSets {
				ignored = append(ignored, name)
			} else {
				daemons = append(daemons, name)
			}
			continue
		}
		if ctrl == nil && !d.force {
			unmanaged = append(unmanaged, name)
			continue
		}
		if hasEmptyDir(p) && !d.deleteEmptyDirData {
			emptyDirs = append(emptyDirs, name)
			continue
		}
		evict = append(evict, p)
	}
	var problems []string
	if len(daemons) > 0 {
		problems = append(problems, "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): "+strings.Join(daemons, ", "))
	}
	if len(emptyDirs) > 0 {
		problems = append(problems, "cannot delete Pods with local storage (use --delete-emptydir-data to override): "+strings.Join(emptyDirs, ", "))
	}
	if len(unmanaged) > 0 {
		problems = append(problems, "cannot delete Pods that declare no controller (use --force to override): "+strings.Join(unmanaged, ", "))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("unable to drain node: %s", strings.Join(problems, "; "))
	}
	if len(ignored) > 0 {
		sort.Strings(ignored)
		fmt.Fprintf(o.streams.Err, "Warning: ignoring DaemonSet-managed Pods: %s\n", strings.Join(ignored, ", "))
	}
	return evict, nil
}

func hasEmptyDir(p *apiv1.Pod) bool {
	for _, v := range p.GetSpec().GetVolumes() {
		if v.GetEmptyDir() != nil {
			return true
		}
	}
	return false
}

// evictAndWait evicts one pod, retrying while a budget refuses, then waits
// until the pod (this uid) is gone.
func (o *options) evictAndWait(ctx context.Context, c *client.Client, p *apiv1.Pod, d *drainOptions) error {
	ns, name, uid := p.GetMetadata().GetNamespace(), p.GetMetadata().GetName(), p.GetMetadata().GetUid()
	opts := client.EvictOptions{}
	if d.gracePeriod >= 0 {
		opts.GracePeriodSeconds = client.Int64(int64(d.gracePeriod))
	}
	fmt.Fprintf(o.streams.Out, "evicting pod %s/%s\n", ns, name)
	for {
		rctx, cancel := o.ctx(ctx)
		_, _, err := c.Evict(rctx, ns, name, opts)
		cancel()
		if err == nil || client.IsNotFound(err) {
			break
		}
		if !client.IsTooManyRequests(err) {
			return err
		}
		fmt.Fprintf(o.streams.Err, "error when evicting pods/%q -n %q (will retry after %s): %s\n", name, ns, d.retryInterval, Message(err))
		select {
		case <-ctx.Done():
			return fmt.Errorf("global timeout reached: %w", ctx.Err())
		case <-time.After(d.retryInterval):
		}
	}
	for {
		rctx, cancel := o.ctx(ctx)
		cur, err := client.Get[*apiv1.Pod](rctx, c, ns, name)
		cancel()
		if client.IsNotFound(err) || (err == nil && cur.GetMetadata().GetUid() != uid) {
			fmt.Fprintf(o.streams.Out, "pod/%s evicted\n", name)
			return nil
		}
		if err != nil && ctx.Err() == nil && !client.IsUnavailable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("global timeout reached waiting for the pod to go: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
