package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/skiffhq/skiff/cmd/ctl/internal/patch"
	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/api/manifest"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// patchConflictRetries bounds re-reading an object a client-side patch
// (json, strategic) lost a race on.
const patchConflictRetries = 5

func (o *options) patchCmd() *cobra.Command {
	var body, file, typ, subresource string
	cmd := &cobra.Command{
		Use:   "patch (KIND NAME | KIND/NAME) (-p PATCH | --patch-file FILE) [--type strategic|merge|json]",
		Short: "Update fields of an object with a strategic merge, JSON merge or JSON patch",
		Long: `Patch changes an object in place. --type merge is an RFC 7386 JSON merge
patch, applied by the server; json is an RFC 6902 JSON patch and strategic
(the default, as kubectl's) a merge patch whose lists of named elements
(containers, env, volumes, ports, …) merge by key; both are applied to the
object as read and written back conditionally on its resourceVersion.`,
		Args:              cobra.RangeArgs(1, 2),
		ValidArgsFunction: o.completeObjects,
		RunE: func(cmd *cobra.Command, args []string) error {
			if (body == "") == (file == "") {
				return fmt.Errorf("exactly one of -p PATCH and --patch-file FILE is required")
			}
			if file != "" {
				b, err := os.ReadFile(file)
				if err != nil {
					return err
				}
				body = string(b)
			}
			if subresource != "" && subresource != "status" {
				return fmt.Errorf("--subresource %q: only status can be patched", subresource)
			}
			var apply func(doc, p []byte) ([]byte, error)
			switch typ {
			case "merge":
			case "json":
				apply = patch.JSONPatch
			case "strategic":
				apply = patch.StrategicMerge
			default:
				return fmt.Errorf("--type %q: must be strategic, merge or json", typ)
			}
			return o.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				ts, err := o.targets(ctx, c, args, "", false)
				if err != nil {
					return err
				}
				if len(ts) != 1 {
					return fmt.Errorf("patch takes exactly one object, got %d", len(ts))
				}
				t := ts[0]
				changed, err := o.patchOne(ctx, c, t, []byte(body), apply, subresource == "status")
				if err != nil {
					return err
				}
				if changed {
					fmt.Fprintf(o.streams.Out, "%s patched\n", resourceName(t.kind, t.name))
				} else {
					fmt.Fprintf(o.streams.Out, "%s patched (no change)\n", resourceName(t.kind, t.name))
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&body, "patch", "p", "", "the patch (JSON or YAML)")
	f.StringVar(&file, "patch-file", "", "read the patch from this file")
	f.StringVar(&typ, "type", "strategic", "strategic, merge or json")
	f.StringVar(&subresource, "subresource", "", "status to patch the status")
	_ = cmd.RegisterFlagCompletionFunc("type", cobra.FixedCompletions([]string{"strategic", "merge", "json"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// patchOne applies one patch; apply nil means a merge patch the server
// applies. It reports whether the object changed.
func (o *options) patchOne(ctx context.Context, c *client.Client, t target, body []byte,
	apply func(doc, p []byte) ([]byte, error), status bool) (bool, error) {
	body, err := toJSON(body)
	if err != nil {
		return false, err
	}
	if apply == nil {
		before, err := o.getObject(ctx, c, t)
		if err != nil {
			return false, err
		}
		env, err := c.API().Patch(ctx, &apiv1.PatchRequest{Kind: t.kind.Name, Namespace: t.ns, Name: t.name, Patch: body, Status: status})
		if err != nil {
			return false, err
		}
		after, _, err := o.reg.Unpack(env)
		return err == nil && after.GetMetadata().GetResourceVersion() != before.GetMetadata().GetResourceVersion(), err
	}
	for attempt := 0; ; attempt++ {
		cur, err := o.getObject(ctx, c, t)
		if err != nil {
			return false, err
		}
		doc, err := manifest.MarshalJSON(cur)
		if err != nil {
			return false, err
		}
		out, err := apply(doc, body)
		if err != nil {
			return false, err
		}
		next, err := o.decodePatched(t.kind, out)
		if err != nil {
			return false, err
		}
		next.GetMetadata().ResourceVersion = cur.GetMetadata().GetResourceVersion()
		if proto.Equal(next, cur) {
			return false, nil
		}
		err = o.update(ctx, c, next, status)
		if client.IsConflict(err) && attempt < patchConflictRetries {
			continue
		}
		return err == nil, err
	}
}

// decodePatched decodes a patched document, which must still be the same kind.
func (o *options) decodePatched(k *kinds.Kind, doc []byte) (kinds.Object, error) {
	d, err := o.dec.DecodeOne("patched object", doc)
	if err != nil {
		return nil, err
	}
	if d.Kind != k {
		return nil, fmt.Errorf("the patch changed the kind to %s", d.Kind.Name)
	}
	return d.Object, nil
}

// update writes obj (conditional on its resourceVersion).
func (o *options) update(ctx context.Context, c *client.Client, obj kinds.Object, status bool) error {
	env, err := o.reg.Pack(obj)
	if err != nil {
		return err
	}
	if status {
		_, err = c.API().UpdateStatus(ctx, &apiv1.UpdateRequest{Object: env})
	} else {
		_, err = c.API().Update(ctx, &apiv1.UpdateRequest{Object: env})
	}
	return err
}

// toJSON accepts a patch as JSON or YAML (kubectl takes both).
func toJSON(b []byte) ([]byte, error) {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && (b[0] == '{' || b[0] == '[') {
		return b, nil
	}
	j, err := sigsyaml.YAMLToJSON(b)
	if err != nil {
		return nil, fmt.Errorf("%w: the patch is neither JSON nor YAML: %v", patch.ErrInvalid, err)
	}
	return j, nil
}
