package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/api/manifest"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

type getFlags struct {
	output        string
	labelSelector string
	fieldSelector string
	watch         bool
	showLabels    bool
}

func (o *options) getCmd() *cobra.Command {
	var f getFlags
	cmd := &cobra.Command{
		Use:   "get KIND [NAME...]",
		Short: "List objects, or show some by name",
		Example: `  ctl get pods -A
  ctl get deploy web -n shop -o yaml
  ctl get pods -l app=web -w`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: o.completeKindThenName,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch f.output {
			case "", "wide", "yaml", "json", "name":
			default:
				return fmt.Errorf("--output %q: must be wide, yaml, json or name", f.output)
			}
			k, err := o.lookup(args[0])
			if err != nil {
				return err
			}
			c, err := o.connect()
			if err != nil {
				return err
			}
			defer c.Close()
			return o.get(cmd.Context(), c, k, args[1:], f)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.output, "output", "o", "", "output format: wide, yaml, json or name")
	fl.StringVarP(&f.labelSelector, "selector", "l", "", "label selector, e.g. app=web,tier!=db")
	fl.StringVar(&f.fieldSelector, "field-selector", "", "field selector, e.g. spec.nodeName=n1")
	fl.BoolVarP(&f.watch, "watch", "w", false, "after listing, watch for changes")
	fl.BoolVar(&f.showLabels, "show-labels", false, "add a LABELS column")
	fl.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "list across all namespaces")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"wide", "yaml", "json", "name"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func (o *options) listNS(k *kinds.Kind) string {
	if !k.Namespaced || o.allNamespaces {
		return ""
	}
	return o.ns()
}

func (o *options) get(parent context.Context, c *client.Client, k *kinds.Kind, names []string, f getFlags) error {
	ctx, cancel := o.ctx(parent)
	defer cancel()
	var objs []kinds.Object
	var rv string
	if len(names) > 0 {
		for _, name := range names {
			env, err := c.API().Get(ctx, &apiv1.GetRequest{Kind: k.Name, Namespace: o.ns(), Name: name})
			if err != nil {
				return err
			}
			obj, _, err := o.reg.Unpack(env)
			if err != nil {
				return err
			}
			objs = append(objs, obj)
			rv = obj.GetMetadata().GetResourceVersion()
		}
	} else {
		envs, listRV, err := c.ListEnvelopes(ctx, k.Name, client.ListOptions{Namespace: o.listNS(k),
			LabelSelector: f.labelSelector, FieldSelector: f.fieldSelector})
		if err != nil {
			return err
		}
		rv = listRV
		for _, env := range envs {
			obj, _, err := o.reg.Unpack(env)
			if err != nil {
				return err
			}
			objs = append(objs, obj)
		}
	}
	p := &printer{o: o, k: k, f: f, out: o.streams.Out, now: time.Now()}
	single := len(names) == 1
	if err := p.print(objs, rv, single); err != nil {
		return err
	}
	if !f.watch {
		return nil
	}
	return o.watch(parent, c, k, names, f, rv, p)
}

// watch prints each change after rv until interrupted; a broken stream
// resumes from the last change printed.
func (o *options) watch(ctx context.Context, c *client.Client, k *kinds.Kind, names []string, f getFlags, rv string, p *printer) error {
	name := ""
	if len(names) == 1 {
		name = names[0]
	}
	p.headerDone = true
	for {
		stream, err := c.API().Watch(ctx, &apiv1.WatchRequest{Kind: k.Name, Namespace: o.listNS(k), Name: name,
			LabelSelector: f.labelSelector, FieldSelector: f.fieldSelector, ResourceVersion: rv})
		if err != nil {
			return err
		}
		for {
			resp, err := stream.Recv()
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				if client.IsTooOld(err) {
					return fmt.Errorf("watch: %s", Message(err))
				}
				break // resume from rv
			}
			for _, ev := range resp.Events {
				obj, _, err := o.reg.Unpack(ev.Object)
				if err != nil {
					return err
				}
				rv = ev.ResourceVersion
				if len(names) > 1 && !contains(names, obj.GetMetadata().GetName()) {
					continue
				}
				p.now = time.Now()
				if err := p.print([]kinds.Object{obj}, rv, true); err != nil {
					return err
				}
			}
		}
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// printer renders objects as a table, YAML, JSON or names.
type printer struct {
	o          *options
	k          *kinds.Kind
	f          getFlags
	out        io.Writer
	now        time.Time
	headerDone bool
	tw         *tabwriter.Writer
}

func (p *printer) print(objs []kinds.Object, rv string, single bool) error {
	switch p.f.output {
	case "yaml", "json":
		var b []byte
		var err error
		switch {
		case single && len(objs) == 1 && p.f.output == "yaml":
			b, err = manifest.MarshalYAML(objs[0])
		case single && len(objs) == 1:
			b, err = manifest.MarshalJSONIndent(objs[0])
		default:
			b, err = manifest.MarshalList(objs, rv, p.f.output == "json")
		}
		if err != nil {
			return err
		}
		if p.headerDone && p.f.output == "yaml" {
			fmt.Fprintln(p.out, "---")
		}
		_, err = p.out.Write(b)
		return err
	case "name":
		for _, obj := range objs {
			fmt.Fprintln(p.out, resourceName(p.k, obj.GetMetadata().GetName()))
		}
		return nil
	}
	if len(objs) == 0 && !p.headerDone {
		if p.k.Namespaced && !p.o.allNamespaces {
			fmt.Fprintf(p.o.streams.Err, "No resources found in %s namespace.\n", p.o.ns())
		} else {
			fmt.Fprintln(p.o.streams.Err, "No resources found")
		}
		return nil
	}
	if p.tw == nil {
		p.tw = tabwriter.NewWriter(p.out, 0, 8, 3, ' ', 0)
	}
	wide := p.f.output == "wide"
	cols := p.k.Columns()
	allNS := p.o.allNamespaces && p.k.Namespaced
	if !p.headerDone {
		var h []string
		if allNS {
			h = append(h, "NAMESPACE")
		}
		for _, c := range cols {
			if !c.Wide || wide {
				h = append(h, c.Name)
			}
		}
		if p.f.showLabels {
			h = append(h, "LABELS")
		}
		fmt.Fprintln(p.tw, strings.Join(h, "\t"))
		p.headerDone = true
	}
	for _, obj := range objs {
		cells := p.k.Row(obj, p.now)
		var row []string
		if allNS {
			row = append(row, obj.GetMetadata().GetNamespace())
		}
		for i, c := range cols {
			if (!c.Wide || wide) && i < len(cells) {
				row = append(row, cells[i])
			}
		}
		if p.f.showLabels {
			row = append(row, labelString(obj.GetMetadata().GetLabels()))
		}
		fmt.Fprintln(p.tw, strings.Join(row, "\t"))
	}
	return p.tw.Flush()
}

func labelString(m map[string]string) string {
	if len(m) == 0 {
		return "<none>"
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

var errNoTarget = errors.New("name objects to act on (KIND NAME…), or use -f FILE or -l SELECTOR")

func jsonOf(obj kinds.Object) ([]byte, error) { return manifest.MarshalJSON(obj) }
