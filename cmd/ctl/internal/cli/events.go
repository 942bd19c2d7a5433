package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

type eventsOptions struct {
	watch  bool
	forObj string
	types  []string
	allNS  bool
}

func (o *options) eventsCmd() *cobra.Command {
	e := &eventsOptions{}
	cmd := &cobra.Command{
		Use:   "events [-w] [--for KIND/NAME] [--types Normal,Warning] [-A]",
		Short: "List events, oldest first; -w follows new ones",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, t := range e.types {
				if t != "Normal" && t != "Warning" {
					return fmt.Errorf("--types %q: must be Normal or Warning", t)
				}
			}
			c, err := o.connect()
			if err != nil {
				return err
			}
			defer c.Close()
			sel, err := o.eventSelector(e.forObj)
			if err != nil {
				return err
			}
			ns := o.ns()
			if e.allNS {
				ns = ""
			}
			ctx, cancel := o.ctx(cmd.Context())
			evs, rv, err := client.List[*apiv1.Event](ctx, c, client.ListOptions{Namespace: ns, FieldSelector: sel})
			cancel()
			if err != nil {
				return err
			}
			sort.SliceStable(evs, func(i, j int) bool { return eventTime(evs[i]) < eventTime(evs[j]) })
			p := &eventPrinter{out: o.streams.Out, allNS: e.allNS, types: e.types}
			if len(evs) == 0 && !e.watch {
				where := fmt.Sprintf(" in %s namespace", ns)
				if e.allNS {
					where = ""
				}
				fmt.Fprintf(o.streams.Err, "No events found%s.\n", where)
				return nil
			}
			if err := p.print(evs); err != nil {
				return err
			}
			if !e.watch {
				return nil
			}
			return o.followEvents(cmd.Context(), c, ns, sel, rv, p)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&e.watch, "watch", "w", false, "after listing, print events as they happen")
	f.StringVar(&e.forObj, "for", "", "only events about this object (KIND/NAME)")
	f.StringSliceVar(&e.types, "types", nil, "only events of these types (Normal, Warning)")
	f.BoolVarP(&e.allNS, "all-namespaces", "A", false, "events of every namespace")
	_ = cmd.RegisterFlagCompletionFunc("for", func(c *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
		return o.completeObjects(c, nil, prefix)
	})
	return cmd
}

// eventSelector turns --for KIND/NAME into a field selector.
func (o *options) eventSelector(forObj string) (string, error) {
	if forObj == "" {
		return "", nil
	}
	kindName, name, ok := strings.Cut(forObj, "/")
	if !ok || name == "" {
		return "", fmt.Errorf("--for %q: must be KIND/NAME", forObj)
	}
	k, err := o.lookup(kindName)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("involvedObject.kind=%s,involvedObject.name=%s", k.Name, name), nil
}

func eventTime(e *apiv1.Event) string {
	for _, t := range []string{e.GetLastTimestamp(), e.GetEventTime(), e.GetFirstTimestamp(), e.GetMetadata().GetCreationTimestamp()} {
		if t != "" {
			return t
		}
	}
	return ""
}

type eventPrinter struct {
	out        io.Writer
	allNS      bool
	types      []string
	headerDone bool
}

// print writes events as kubectl's `events`: LAST SEEN, TYPE, REASON,
// OBJECT, MESSAGE (NAMESPACE first with -A).
func (p *eventPrinter) print(evs []*apiv1.Event) error {
	tw := tabwriter.NewWriter(p.out, 0, 8, 3, ' ', 0)
	if !p.headerDone {
		if p.allNS {
			fmt.Fprint(tw, "NAMESPACE\t")
		}
		fmt.Fprintln(tw, "LAST SEEN\tTYPE\tREASON\tOBJECT\tMESSAGE")
		p.headerDone = true
	}
	now := time.Now()
	for _, e := range evs {
		if len(p.types) > 0 && !contains(p.types, e.GetType()) {
			continue
		}
		seen := "<unknown>"
		if t, err := time.Parse(time.RFC3339, eventTime(e)); err == nil {
			seen = kinds.HumanDuration(now.Sub(t))
			if e.GetCount() > 1 {
				seen = fmt.Sprintf("%s (x%d)", seen, e.GetCount())
			}
		}
		ref := e.GetInvolvedObject()
		if p.allNS {
			fmt.Fprintf(tw, "%s\t", e.GetMetadata().GetNamespace())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s/%s\t%s\n", seen, e.GetType(), e.GetReason(), strings.ToLower(ref.GetKind()), ref.GetName(), e.GetMessage())
	}
	return tw.Flush()
}

// followEvents prints events added or updated after rv, resuming a broken
// watch from the last one printed, until the command is interrupted.
func (o *options) followEvents(ctx context.Context, c *client.Client, ns, sel, rv string, p *eventPrinter) error {
	for {
		stream, err := c.API().Watch(ctx, &apiv1.WatchRequest{Kind: "Event", Namespace: ns, FieldSelector: sel, ResourceVersion: rv})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
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
				break
			}
			for _, ev := range resp.GetEvents() {
				rv = ev.GetResourceVersion()
				if ev.GetType() == apiv1.WatchEvent_DELETED {
					continue
				}
				obj, err := client.Unpack(ev.GetObject())
				if err != nil {
					return err
				}
				if e, ok := obj.(*apiv1.Event); ok {
					if err := p.print([]*apiv1.Event{e}); err != nil {
						return err
					}
				}
			}
		}
	}
}
