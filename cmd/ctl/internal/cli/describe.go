package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/api/manifest"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

func (o *options) describeCmd() *cobra.Command {
	var selector string
	cmd := &cobra.Command{
		Use:               "describe KIND [NAME...]",
		Short:             "Show objects in detail, with their events",
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: o.completeKindThenName,
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := o.lookup(args[0])
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
			var objs []kinds.Object
			if len(args) > 1 {
				for _, name := range args[1:] {
					env, err := c.API().Get(ctx, &apiv1.GetRequest{Kind: k.Name, Namespace: o.ns(), Name: name})
					if err != nil {
						return err
					}
					obj, _, err := o.reg.Unpack(env)
					if err != nil {
						return err
					}
					objs = append(objs, obj)
				}
			} else {
				envs, _, err := c.ListEnvelopes(ctx, k.Name, client.ListOptions{Namespace: o.listNS(k), LabelSelector: selector})
				if err != nil {
					return err
				}
				for _, env := range envs {
					obj, _, err := o.reg.Unpack(env)
					if err != nil {
						return err
					}
					objs = append(objs, obj)
				}
			}
			for i, obj := range objs {
				if i > 0 {
					fmt.Fprintln(o.streams.Out)
				}
				if err := o.describe(ctx, c, k, obj, o.streams.Out); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&selector, "selector", "l", "", "label selector")
	return cmd
}

// describe prints metadata, the object's other fields as YAML, and the
// Events whose involvedObject is it.
func (o *options) describe(ctx context.Context, c *client.Client, k *kinds.Kind, obj kinds.Object, out io.Writer) error {
	md := obj.GetMetadata()
	tw := tabwriter.NewWriter(out, 0, 8, 1, ' ', 0)
	fmt.Fprintf(tw, "Name:\t%s\n", md.GetName())
	if k.Namespaced {
		fmt.Fprintf(tw, "Namespace:\t%s\n", md.GetNamespace())
	}
	fmt.Fprintf(tw, "Kind:\t%s (%s)\n", k.Name, k.APIVersion())
	fmt.Fprintf(tw, "Labels:\t%s\n", labelString(md.GetLabels()))
	ann := map[string]string{}
	for key, v := range md.GetAnnotations() {
		if key != "skiff.io/last-applied-configuration" {
			ann[key] = v
		}
	}
	fmt.Fprintf(tw, "Annotations:\t%s\n", labelString(ann))
	fmt.Fprintf(tw, "UID:\t%s\n", md.GetUid())
	fmt.Fprintf(tw, "Created:\t%s\n", md.GetCreationTimestamp())
	if md.GetDeletionTimestamp() != "" {
		fmt.Fprintf(tw, "Deleting:\tsince %s (grace %ds)\n", md.GetDeletionTimestamp(), md.GetDeletionGracePeriodSeconds())
	}
	for _, r := range md.GetOwnerReferences() {
		fmt.Fprintf(tw, "Controlled By:\t%s/%s\n", r.GetKind(), r.GetName())
	}
	if len(md.GetFinalizers()) > 0 {
		fmt.Fprintf(tw, "Finalizers:\t%s\n", strings.Join(md.GetFinalizers(), ", "))
	}
	if k.Name == "Node" {
		// A node's status is rewritten only when it changes (or each
		// minute); its liveness is the heartbeat Lease, as kubectl shows.
		fmt.Fprintf(tw, "Lease:\t%s\n", nodeLease(ctx, c, md.GetName()))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// Everything but metadata, as YAML.
	js, err := manifest.MarshalJSON(obj)
	if err != nil {
		return err
	}
	var tree map[string]any
	if err := json.Unmarshal(js, &tree); err != nil {
		return err
	}
	for _, key := range []string{"apiVersion", "kind", "metadata"} {
		delete(tree, key)
	}
	if len(tree) > 0 {
		b, err := yaml.Marshal(tree)
		if err != nil {
			return err
		}
		fmt.Fprint(out, indentTitles(string(b)))
	}
	return o.printEvents(ctx, c, k, obj, out)
}

// nodeLease summarizes a node's heartbeat Lease.
func nodeLease(ctx context.Context, c *client.Client, node string) string {
	l, err := client.Get[*apiv1.Lease](ctx, c, apiv1.NodeLeaseNamespace, node)
	switch {
	case client.IsNotFound(err):
		return "<none> (the node has never heartbeated through " + apiv1.NodeLeaseNamespace + ")"
	case err != nil:
		return "<unknown: " + err.Error() + ">"
	}
	return fmt.Sprintf("holder %s, renewed %s", l.GetSpec().GetHolderIdentity(), l.GetSpec().GetRenewTime())
}

// indentTitles capitalizes top-level keys ("spec:" → "Spec:") as describe does.
func indentTitles(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l != "" && l[0] != ' ' && l[0] != '-' && strings.Contains(l, ":") {
			lines[i] = strings.ToUpper(l[:1]) + l[1:]
		}
	}
	return strings.Join(lines, "\n")
}

func (o *options) printEvents(ctx context.Context, c *client.Client, k *kinds.Kind, obj kinds.Object, out io.Writer) error {
	md := obj.GetMetadata()
	ns := md.GetNamespace()
	if ns == "" {
		ns = "default"
	}
	sel := fmt.Sprintf("involvedObject.kind=%s,involvedObject.name=%s", k.Name, md.GetName())
	if md.GetUid() != "" {
		sel += ",involvedObject.uid=" + md.GetUid()
	}
	evs, _, err := client.List[*apiv1.Event](ctx, c, client.ListOptions{Namespace: ns, FieldSelector: sel})
	if err != nil {
		return err
	}
	if len(evs) == 0 {
		fmt.Fprintln(out, "Events:\t<none>")
		return nil
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].GetLastTimestamp() < evs[j].GetLastTimestamp() })
	fmt.Fprintln(out, "Events:")
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  TYPE\tREASON\tAGE\tFROM\tMESSAGE")
	now := time.Now()
	for _, e := range evs {
		when := e.GetLastTimestamp()
		age := "<unknown>"
		if t, err := time.Parse(time.RFC3339, when); err == nil {
			age = kinds.HumanDuration(now.Sub(t))
			if e.GetCount() > 1 {
				age = fmt.Sprintf("%s (x%d)", age, e.GetCount())
			}
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", e.GetType(), e.GetReason(), age, e.GetSource().GetComponent(), e.GetMessage())
	}
	return tw.Flush()
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
