package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/proto/client"
)

func (o *options) deleteCmd() *cobra.Command {
	var files []string
	var selector, cascade string
	var grace int64
	var now, recursive, ignoreNotFound bool
	cmd := &cobra.Command{
		Use:   "delete (KIND NAME... | -f FILE | KIND -l SELECTOR)",
		Short: "Delete objects by name, by manifest, or by label selector",
		Example: `  ctl delete pod web-1
  ctl delete -f web.yaml
  ctl delete pods -l app=web --cascade=foreground`,
		ValidArgsFunction: o.completeKindThenName,
		RunE: func(cmd *cobra.Command, args []string) error {
			policy, err := cascadePolicy(cascade)
			if err != nil {
				return err
			}
			opts := client.DeleteOptions{PropagationPolicy: policy}
			if cmd.Flags().Changed("grace-period") {
				opts.GracePeriodSeconds = &grace
			}
			if now {
				opts.GracePeriodSeconds = client.Int64(0)
			}
			type target struct {
				k        *kinds.Kind
				ns, name string
			}
			var targets []target
			c, err := o.connect()
			if err != nil {
				return err
			}
			defer c.Close()
			switch {
			case len(files) > 0:
				if len(args) > 0 {
					return fmt.Errorf("give either -f or KIND NAME, not both")
				}
				return o.deleteFiles(cmd.Context(), c, files, recursive, opts, ignoreNotFound)
			case len(args) >= 1 && selector != "":
				k, err := o.lookup(args[0])
				if err != nil {
					return err
				}
				ctx, cancel := o.ctx(cmd.Context())
				envs, _, err := c.ListEnvelopes(ctx, k.Name, client.ListOptions{Namespace: o.listNS(k), LabelSelector: selector})
				cancel()
				if err != nil {
					return err
				}
				for _, env := range envs {
					obj, err := client.Unpack(env)
					if err != nil {
						return err
					}
					targets = append(targets, target{k, obj.GetMetadata().GetNamespace(), obj.GetMetadata().GetName()})
				}
				if len(targets) == 0 {
					fmt.Fprintln(o.streams.Err, "No resources found")
				}
			case len(args) >= 2:
				k, err := o.lookup(args[0])
				if err != nil {
					return err
				}
				for _, name := range args[1:] {
					targets = append(targets, target{k, o.ns(), name})
				}
			default:
				return errNoTarget
			}
			for _, t := range targets {
				if err := o.deleteOne(cmd.Context(), c, t.k, t.ns, t.name, opts); err != nil {
					return err
				}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVarP(&files, "filename", "f", nil, "delete the objects a manifest names")
	fl.BoolVarP(&recursive, "recursive", "R", false, "descend into subdirectories of -f directories")
	fl.StringVarP(&selector, "selector", "l", "", "delete the objects of KIND matching this label selector")
	fl.StringVar(&cascade, "cascade", "background", "dependents: background, foreground or orphan")
	fl.Int64Var(&grace, "grace-period", -1, "seconds a pod gets to stop (0: at once); default the pod's own")
	fl.BoolVar(&now, "now", false, "same as --grace-period=0")
	fl.BoolVar(&ignoreNotFound, "ignore-not-found", false, "with -f: an object that is already gone is not an error")
	fl.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "with -l: across all namespaces")
	_ = cmd.RegisterFlagCompletionFunc("cascade", cobra.FixedCompletions([]string{"background", "foreground", "orphan"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// deleteFiles deletes the objects the manifests name, each reported on its
// own; one that fails does not stop the others (exit status 1 at the end).
// Namespaced objects go first, their namespaces last.
func (o *options) deleteFiles(ctx context.Context, c *client.Client, files []string, recursive bool, opts client.DeleteOptions, ignoreNotFound bool) error {
	docs, problems, err := o.readManifests(files, recursive)
	if err != nil {
		return err
	}
	rep := newBatchReport(o, "deleted")
	rep.problems(problems)
	for i := len(docs) - 1; i >= 0; i-- {
		d := docs[i]
		md := d.Object.GetMetadata()
		name := resourceName(d.Kind, md.GetName())
		removed, err := o.deleteQuiet(ctx, c, d.Kind, md.GetNamespace(), md.GetName(), opts)
		switch {
		case ignoreNotFound && client.IsNotFound(err):
			continue
		case err != nil:
			rep.failed(d, name, err)
		case removed:
			rep.done(name, fmt.Sprintf("%s %q deleted", kindLabel(d.Kind), md.GetName()))
		default:
			rep.done(name, fmt.Sprintf("%s %q marked for deletion", kindLabel(d.Kind), md.GetName()))
		}
	}
	return rep.err()
}

func cascadePolicy(s string) (string, error) {
	switch strings.ToLower(s) {
	case "background", "true", "":
		return "Background", nil
	case "foreground":
		return "Foreground", nil
	case "orphan", "false":
		return "Orphan", nil
	}
	return "", fmt.Errorf("--cascade %q: must be background, foreground or orphan", s)
}

func (o *options) deleteQuiet(parent context.Context, c *client.Client, k *kinds.Kind, ns, name string, opts client.DeleteOptions) (removed bool, err error) {
	if opts.GracePeriodSeconds != nil && *opts.GracePeriodSeconds < 0 {
		opts.GracePeriodSeconds = nil
	}
	ctx, cancel := o.ctx(parent)
	defer cancel()
	_, removed, err = c.Delete(ctx, k.Name, ns, name, opts)
	return removed, err
}

func (o *options) deleteOne(parent context.Context, c *client.Client, k *kinds.Kind, ns, name string, opts client.DeleteOptions) error {
	removed, err := o.deleteQuiet(parent, c, k, ns, name, opts)
	if err != nil {
		return err
	}
	label := kindLabel(k)
	if removed {
		fmt.Fprintf(o.streams.Out, "%s %q deleted\n", label, name)
	} else {
		fmt.Fprintf(o.streams.Out, "%s %q marked for deletion\n", label, name)
	}
	return nil
}

// kindLabel is kubectl's "deployment.apps".
func kindLabel(k *kinds.Kind) string {
	if k.Group == "" {
		return k.Singular
	}
	return k.Singular + "." + k.Group
}
