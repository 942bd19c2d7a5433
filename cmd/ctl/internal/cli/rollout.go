package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/controllers/deployment"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// rolloutCmd is `ctl rollout status|history|undo|pause|resume`; the
// operations live in controllers/deployment, next to the annotations and
// conditions they read.
func (o *options) rolloutCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout SUBCOMMAND",
		Short: "Manage the rollout of a Deployment",
		Example: `  ctl rollout status deployment/web
  ctl rollout history deployment/web
  ctl rollout undo deployment/web --to-revision=2
  ctl rollout pause deployment/web
  ctl rollout resume deployment/web`,
	}
	cmd.AddCommand(o.rolloutStatusCmd(), o.rolloutHistoryCmd(), o.rolloutUndoCmd(),
		o.rolloutPauseCmd(true), o.rolloutPauseCmd(false))
	return cmd
}

// deploymentArg parses "deployment/web", "deploy web" or "web" (args are
// KIND/NAME or KIND NAME); only Deployments have rollouts here.
func (o *options) deploymentArg(args []string) (*kinds.Kind, string, error) {
	var kind, name string
	switch {
	case len(args) == 1 && strings.Contains(args[0], "/"):
		kind, name, _ = strings.Cut(args[0], "/")
	case len(args) == 2:
		kind, name = args[0], args[1]
	default:
		return nil, "", fmt.Errorf("give the object as KIND/NAME or KIND NAME (e.g. deployment/web)")
	}
	k, err := o.lookup(kind)
	if err != nil {
		return nil, "", err
	}
	if k.Name != "Deployment" {
		return nil, "", fmt.Errorf("%s has no rollout (only Deployment does)", k.Name)
	}
	if name == "" {
		return nil, "", fmt.Errorf("name is required (e.g. deployment/web)")
	}
	return k, name, nil
}

func (o *options) rolloutStatusCmd() *cobra.Command {
	var watch bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status KIND/NAME",
		Short: "Show a rollout's progress, waiting until it finishes (--watch=false: once)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, name, err := o.deploymentArg(args)
			if err != nil {
				return err
			}
			c, err := o.connect()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			return rolloutStatus(ctx, c, o.ns(), name, watch, o.timeout, func(line string) {
				fmt.Fprintln(o.streams.Out, line)
			})
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", true, "wait until the rollout finishes")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up waiting after this long (0: never)")
	return cmd
}

// rolloutStatus prints each new status line until the rollout finishes
// (or once). It follows the Deployment with a watch, re-reading on every
// change; a broken watch is re-opened from the last version seen.
func rolloutStatus(ctx context.Context, c *client.Client, ns, name string, watch bool, reqTimeout time.Duration, print func(string)) error {
	last := ""
	check := func(d *apiv1.Deployment) (bool, error) {
		msg, done, err := deployment.RolloutStatus(d)
		if err != nil {
			return false, err
		}
		if msg != last {
			print(msg)
			last = msg
		}
		return done, nil
	}
	rctx, cancel := context.WithTimeout(ctx, reqTimeout)
	d, err := client.Get[*apiv1.Deployment](rctx, c, ns, name)
	cancel()
	if err != nil {
		return err
	}
	if done, err := check(d); done || err != nil || !watch {
		return err
	}
	rv := d.GetMetadata().GetResourceVersion()
	for {
		stream, err := c.API().Watch(ctx, &apiv1.WatchRequest{Kind: "Deployment", Namespace: ns, Name: name, ResourceVersion: rv})
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("timed out waiting for the rollout of deployment %q: %w", name, ctx.Err())
			}
			return err
		}
		for {
			resp, err := stream.Recv()
			if err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("timed out waiting for the rollout of deployment %q: %w", name, ctx.Err())
				}
				break // re-open from rv
			}
			for _, ev := range resp.GetEvents() {
				rv = ev.GetResourceVersion()
				if ev.GetType() == apiv1.WatchEvent_DELETED {
					return fmt.Errorf("deployment %q was deleted", name)
				}
				obj, err := client.Unpack(ev.GetObject())
				if err != nil {
					return err
				}
				if done, err := check(obj.(*apiv1.Deployment)); done || err != nil {
					return err
				}
			}
		}
	}
}

func (o *options) rolloutHistoryCmd() *cobra.Command {
	var revision int64
	cmd := &cobra.Command{
		Use:   "history KIND/NAME",
		Short: "List a Deployment's revisions (--revision=N: that revision's pod template)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, name, err := o.deploymentArg(args)
			if err != nil {
				return err
			}
			c, err := o.connect()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := o.ctx(cmd.Context())
			defer cancel()
			_, hist, err := deployment.History(ctx, c, o.ns(), name)
			if err != nil {
				return err
			}
			out := o.streams.Out
			if revision > 0 {
				for _, h := range hist {
					if h.Revision == revision {
						fmt.Fprintf(out, "%s with revision #%d\n", resourceName(k, name), revision)
						printTemplate(out, h.ReplicaSet.GetSpec().GetTemplate())
						return nil
					}
				}
				return fmt.Errorf("unable to find the specified revision %d", revision)
			}
			fmt.Fprintln(out, resourceName(k, name))
			tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "REVISION\tCHANGE-CAUSE")
			for _, h := range hist {
				cause := h.ChangeCause
				if cause == "" {
					cause = "<none>"
				}
				fmt.Fprintf(tw, "%d\t%s\n", h.Revision, cause)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().Int64Var(&revision, "revision", 0, "show the pod template of this revision")
	return cmd
}

func printTemplate(out interface{ Write([]byte) (int, error) }, t *apiv1.PodTemplateSpec) {
	fmt.Fprintln(out, "Pod Template:")
	var labels []string
	for _, k := range sortedKeys(t.GetMetadata().GetLabels()) {
		labels = append(labels, k+"="+t.GetMetadata().GetLabels()[k])
	}
	fmt.Fprintf(out, "  Labels:\t%s\n", strings.Join(labels, ","))
	fmt.Fprintln(out, "  Containers:")
	for _, c := range t.GetSpec().GetContainers() {
		fmt.Fprintf(out, "   %s:\n    Image:\t%s\n", c.GetName(), c.GetImage())
	}
}

func (o *options) rolloutUndoCmd() *cobra.Command {
	var to int64
	cmd := &cobra.Command{
		Use:   "undo KIND/NAME",
		Short: "Roll back to the previous revision (or --to-revision)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, name, err := o.deploymentArg(args)
			if err != nil {
				return err
			}
			c, err := o.connect()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := o.ctx(cmd.Context())
			defer cancel()
			if _, err := deployment.Undo(ctx, c, o.ns(), name, to); err != nil {
				return err
			}
			fmt.Fprintf(o.streams.Out, "%s rolled back\n", resourceName(k, name))
			return nil
		},
	}
	cmd.Flags().Int64Var(&to, "to-revision", 0, "revision to roll back to (0: the previous one)")
	return cmd
}

func (o *options) rolloutPauseCmd(pause bool) *cobra.Command {
	verb, done, already := "pause", "paused", "is already paused"
	short := "Pause a Deployment: template changes do not roll out until resumed"
	if !pause {
		verb, done, already = "resume", "resumed", "is not paused"
		short = "Resume a paused Deployment's rollout"
	}
	return &cobra.Command{
		Use:   verb + " KIND/NAME",
		Short: short,
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, name, err := o.deploymentArg(args)
			if err != nil {
				return err
			}
			c, err := o.connect()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := o.ctx(cmd.Context())
			defer cancel()
			changed, err := deployment.SetPaused(ctx, c, o.ns(), name, pause)
			if err != nil {
				return err
			}
			if !changed {
				return errors.New(k.Plural + "." + k.Group + " \"" + name + "\" " + already)
			}
			fmt.Fprintf(o.streams.Out, "%s %s\n", resourceName(k, name), done)
			return nil
		},
	}
}
