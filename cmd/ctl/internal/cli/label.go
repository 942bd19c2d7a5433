package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// target is one object a verb acts on.
type target struct {
	kind *kinds.Kind
	ns   string
	name string
}

// targets resolves kubectl's object arguments: "KIND NAME...",
// "KIND/NAME...", or "KIND" with a label selector or all. The names
// given must exist (NotFound otherwise); selected objects are listed.
func (o *options) targets(ctx context.Context, c *client.Client, args []string, selector string, all bool) ([]target, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("you must specify the type of resource (e.g. pods, deployments) and a name, -l SELECTOR or --all")
	}
	var out []target
	if strings.Contains(args[0], "/") {
		for _, a := range args {
			kindName, name, ok := strings.Cut(a, "/")
			if !ok || name == "" {
				return nil, fmt.Errorf("argument %q: mixing KIND/NAME and KIND NAME is not allowed; write every object as KIND/NAME", a)
			}
			k, err := o.lookup(kindName)
			if err != nil {
				return nil, err
			}
			out = append(out, target{k, o.scope(k), name})
		}
	} else {
		k, err := o.lookup(args[0])
		if err != nil {
			return nil, err
		}
		for _, name := range args[1:] {
			out = append(out, target{k, o.scope(k), name})
		}
		if selector != "" || all {
			if len(args) > 1 {
				return nil, fmt.Errorf("names and -l/--all cannot be combined")
			}
			envs, _, err := c.ListEnvelopes(ctx, k.Name, client.ListOptions{Namespace: o.scope(k), LabelSelector: selector})
			if err != nil {
				return nil, err
			}
			for _, e := range envs {
				obj, err := client.Unpack(e)
				if err != nil {
					return nil, err
				}
				out = append(out, target{k, obj.GetMetadata().GetNamespace(), obj.GetMetadata().GetName()})
			}
			if len(out) == 0 {
				return nil, fmt.Errorf("no %s found matching %q", k.Plural, selector)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("you must give a name, -l SELECTOR or --all after %q", args[0])
	}
	return out, nil
}

// scope is the namespace of k's objects for this command.
func (o *options) scope(k *kinds.Kind) string {
	if !k.Namespaced {
		return ""
	}
	return o.ns()
}

// getObject reads one object.
func (o *options) getObject(ctx context.Context, c *client.Client, t target) (kinds.Object, error) {
	env, err := c.API().Get(ctx, &apiv1.GetRequest{Kind: t.kind.Name, Namespace: t.ns, Name: t.name})
	if err != nil {
		return nil, err
	}
	obj, _, err := o.reg.Unpack(env)
	return obj, err
}

// metaChange is "key=value" (set) or "key-" (remove).
type metaChange struct {
	key, value string
	remove     bool
}

// splitMetaArgs separates KEY=VALUE and KEY- arguments from object ones.
func splitMetaArgs(args []string) (objects []string, changes []metaChange, err error) {
	for _, a := range args {
		switch {
		case strings.Contains(a, "="):
			k, v, _ := strings.Cut(a, "=")
			if k == "" {
				return nil, nil, fmt.Errorf("invalid argument %q: the key is empty", a)
			}
			changes = append(changes, metaChange{key: k, value: v})
		case strings.HasSuffix(a, "-") && len(a) > 1:
			// No object name ends with "-" (DNS names), so this is a key
			// to remove, prefixed ("example.com/team-") or not.
			changes = append(changes, metaChange{key: strings.TrimSuffix(a, "-"), remove: true})
		default:
			if len(changes) > 0 {
				return nil, nil, fmt.Errorf("argument %q: objects come before the KEY=VALUE and KEY- changes", a)
			}
			objects = append(objects, a)
		}
	}
	if len(changes) == 0 {
		return nil, nil, fmt.Errorf("at least one KEY=VALUE or KEY- is required")
	}
	seen := map[string]bool{}
	for _, ch := range changes {
		if seen[ch.key] {
			return nil, nil, fmt.Errorf("key %q is given more than once", ch.key)
		}
		seen[ch.key] = true
	}
	return objects, changes, nil
}

type metaVerb struct {
	name, field, past string // "label", "labels", "labeled"
	current           func(md *apiv1.ObjectMeta) map[string]string
	validate          func(changes []metaChange) error
}

func (o *options) labelCmd() *cobra.Command {
	return o.metaCmd(metaVerb{name: "label", field: "labels", past: "labeled",
		current: func(md *apiv1.ObjectMeta) map[string]string { return md.GetLabels() },
		validate: func(changes []metaChange) error {
			for _, ch := range changes {
				if msgs := kinds.IsQualifiedName(ch.key); len(msgs) > 0 {
					return fmt.Errorf("invalid label key %q: %s", ch.key, strings.Join(msgs, "; "))
				}
				if msgs := kinds.IsLabelValue(ch.value); !ch.remove && len(msgs) > 0 {
					return fmt.Errorf("invalid label value %q for key %q: %s", ch.value, ch.key, strings.Join(msgs, "; "))
				}
			}
			return nil
		}})
}

func (o *options) annotateCmd() *cobra.Command {
	return o.metaCmd(metaVerb{name: "annotate", field: "annotations", past: "annotated",
		current: func(md *apiv1.ObjectMeta) map[string]string { return md.GetAnnotations() },
		validate: func(changes []metaChange) error {
			for _, ch := range changes {
				if msgs := kinds.IsQualifiedName(ch.key); len(msgs) > 0 {
					return fmt.Errorf("invalid annotation key %q: %s", ch.key, strings.Join(msgs, "; "))
				}
			}
			return nil
		}})
}

// metaCmd is `ctl label` and `ctl annotate`: set (KEY=VALUE) or remove
// (KEY-) labels or annotations on objects named or selected.
func (o *options) metaCmd(v metaVerb) *cobra.Command {
	var overwrite, all bool
	var selector, resourceVersion string
	cmd := &cobra.Command{
		Use:               v.name + " (KIND NAME... | KIND/NAME... | KIND -l SELECTOR | KIND --all) KEY=VALUE... KEY-...",
		Short:             fmt.Sprintf("Update the %s of objects", v.field),
		Args:              cobra.MinimumNArgs(2),
		ValidArgsFunction: o.completeObjects,
		RunE: func(cmd *cobra.Command, args []string) error {
			objects, changes, err := splitMetaArgs(args)
			if err != nil {
				return err
			}
			if err := v.validate(changes); err != nil {
				return err
			}
			return o.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				ts, err := o.targets(ctx, c, objects, selector, all)
				if err != nil {
					return err
				}
				if resourceVersion != "" && len(ts) != 1 {
					return fmt.Errorf("--resource-version may be used with one object only")
				}
				for _, t := range ts {
					if err := o.changeMeta(ctx, c, v, t, changes, overwrite, resourceVersion); err != nil {
						return err
					}
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&overwrite, "overwrite", false, fmt.Sprintf("allow replacing existing %s (otherwise a changed value is an error)", v.field))
	f.StringVarP(&selector, "selector", "l", "", "act on the objects this label selector matches")
	f.BoolVar(&all, "all", false, "act on every object of the kind in the namespace")
	f.StringVar(&resourceVersion, "resource-version", "", "only change the object if it is still at this resourceVersion")
	return cmd
}

func (o *options) changeMeta(ctx context.Context, c *client.Client, v metaVerb, t target, changes []metaChange, overwrite bool, rv string) error {
	obj, err := o.getObject(ctx, c, t)
	if err != nil {
		return err
	}
	cur := v.current(obj.GetMetadata())
	patch := map[string]any{}
	for _, ch := range changes {
		old, had := cur[ch.key]
		switch {
		case ch.remove:
			if had {
				patch[ch.key] = nil
			}
		case had && old == ch.value:
		case had && !overwrite:
			return fmt.Errorf("'%s' already has a value (%s), and --overwrite is false", ch.key, old)
		default:
			patch[ch.key] = ch.value
		}
	}
	what := resourceName(t.kind, t.name)
	if len(patch) == 0 {
		fmt.Fprintf(o.streams.Out, "%s not %s\n", what, v.past)
		return nil
	}
	md := map[string]any{v.field: patch}
	if rv != "" {
		md["resourceVersion"] = rv
	}
	body, _ := json.Marshal(map[string]any{"metadata": md})
	if _, err := c.API().Patch(ctx, &apiv1.PatchRequest{Kind: t.kind.Name, Namespace: t.ns, Name: t.name, Patch: body}); err != nil {
		return err
	}
	fmt.Fprintf(o.streams.Out, "%s %s\n", what, v.past)
	return nil
}
