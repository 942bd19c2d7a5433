package cli

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/skiffhq/skiff/controlplane/usage"
)

// topCmd is kubectl top: CPU and memory the agents read from cgroups and
// publish every 15 s (NodeMetrics), the numbers the HPA acts on.
func (o *options) topCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Display CPU and memory usage of nodes or pods (from the agents' cgroup readings)",
		Long: `Display resource (CPU and memory) usage, as kubectl top. The agents read
it from cgroups and publish it every 15 s; a node that has not reported for
two minutes is left out. CPU is the average over the last interval.`,
	}
	cmd.AddCommand(o.topNodesCmd(), o.topPodsCmd())
	return cmd
}

type topFlags struct {
	sortBy    string
	noHeaders bool
}

func (f *topFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.sortBy, "sort-by", "", "sort by cpu or memory (largest first)")
	cmd.Flags().BoolVar(&f.noHeaders, "no-headers", false, "print no header line")
}

func (f topFlags) check() error {
	if f.sortBy != "" && f.sortBy != "cpu" && f.sortBy != "memory" {
		return fmt.Errorf("--sort-by %q: want cpu or memory", f.sortBy)
	}
	return nil
}

// ErrNoMetrics is kubectl's answer when nothing has reported yet.
var ErrNoMetrics = errors.New("metrics not available yet")

func (o *options) topNodesCmd() *cobra.Command {
	var f topFlags
	cmd := &cobra.Command{
		Use:     "node [NAME]",
		Aliases: []string{"nodes", "no"},
		Short:   "Display CPU and memory usage of nodes",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(); err != nil {
				return err
			}
			c, err := o.connect()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := o.ctx(cmd.Context())
			defer cancel()
			nodes, err := usage.Nodes(ctx, c)
			if err != nil {
				return err
			}
			if len(args) == 1 {
				var one []usage.Node
				for _, n := range nodes {
					if n.Name == args[0] {
						one = append(one, n)
					}
				}
				if len(one) == 0 {
					return fmt.Errorf("%w for node %q", ErrNoMetrics, args[0])
				}
				nodes = one
			}
			if len(nodes) == 0 {
				return ErrNoMetrics
			}
			sortUsage(f.sortBy, len(nodes), func(i int) (int64, int64) { return nodes[i].CPUMilli, nodes[i].MemoryBytes },
				func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
			writeTopNodes(o.streams.Out, nodes, f.noHeaders)
			return nil
		},
	}
	f.add(cmd)
	return cmd
}

func writeTopNodes(w io.Writer, nodes []usage.Node, noHeaders bool) {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	if !noHeaders {
		fmt.Fprintln(tw, "NAME\tCPU(cores)\tCPU(%)\tMEMORY(bytes)\tMEMORY(%)")
	}
	for _, n := range nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.Name, cpuCores(n.CPUMilli), percent(n.CPUMilli, n.AllocatableCPUMilli),
			memMi(n.MemoryBytes), percent(n.MemoryBytes, n.AllocatableMemoryBytes))
	}
	_ = tw.Flush()
}

func (o *options) topPodsCmd() *cobra.Command {
	var f topFlags
	var all, containers bool
	cmd := &cobra.Command{
		Use:     "pod [NAME]",
		Aliases: []string{"pods", "po"},
		Short:   "Display CPU and memory usage of pods (and of their containers with --containers)",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(); err != nil {
				return err
			}
			if all && len(args) == 1 {
				return errors.New("a pod NAME cannot be given with --all-namespaces")
			}
			c, err := o.connect()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := o.ctx(cmd.Context())
			defer cancel()
			ns := o.ns()
			if all {
				ns = ""
			}
			pods, err := usage.Pods(ctx, c, ns)
			if err != nil {
				return err
			}
			if len(args) == 1 {
				var one []usage.Pod
				for _, p := range pods {
					if p.Name == args[0] {
						one = append(one, p)
					}
				}
				if len(one) == 0 {
					return fmt.Errorf("%w for pod %s/%s", ErrNoMetrics, ns, args[0])
				}
				pods = one
			}
			if len(pods) == 0 {
				fmt.Fprintf(o.streams.Err, "No resources found in %s namespace.\n", nsOrAll(ns))
				return nil
			}
			sortUsage(f.sortBy, len(pods), func(i int) (int64, int64) { return pods[i].CPUMilli, pods[i].MemoryBytes },
				func(i, j int) { pods[i], pods[j] = pods[j], pods[i] })
			writeTopPods(o.streams.Out, pods, all, containers, f.noHeaders)
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "pods of every namespace")
	cmd.Flags().BoolVar(&containers, "containers", false, "one line per container")
	return cmd
}

func nsOrAll(ns string) string {
	if ns == "" {
		return "any"
	}
	return ns
}

func writeTopPods(w io.Writer, pods []usage.Pod, withNS, containers, noHeaders bool) {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	prefix := func(p usage.Pod) string {
		if withNS {
			return p.Namespace + "\t"
		}
		return ""
	}
	if !noHeaders {
		h := ""
		if withNS {
			h = "NAMESPACE\t"
		}
		if containers {
			h += "POD\tNAME\tCPU(cores)\tMEMORY(bytes)"
		} else {
			h += "NAME\tCPU(cores)\tMEMORY(bytes)"
		}
		fmt.Fprintln(tw, h)
	}
	for _, p := range pods {
		if !containers {
			fmt.Fprintf(tw, "%s%s\t%s\t%s\n", prefix(p), p.Name, cpuCores(p.CPUMilli), memMi(p.MemoryBytes))
			continue
		}
		for _, ct := range p.Containers {
			fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\n", prefix(p), p.Name, ct.Name, cpuCores(ct.CPUMilli), memMi(ct.MemoryBytes))
		}
	}
	_ = tw.Flush()
}

// sortUsage orders n rows largest first by cpu or memory (stable; no-op
// without a key).
func sortUsage(by string, n int, get func(int) (cpu, mem int64), swap func(i, j int)) {
	if by == "" {
		return
	}
	sort.Stable(usageSorter{n: n, less: func(i, j int) bool {
		ci, mi := get(i)
		cj, mj := get(j)
		if by == "cpu" {
			return ci > cj
		}
		return mi > mj
	}, swap: swap})
}

type usageSorter struct {
	n    int
	less func(i, j int) bool
	swap func(i, j int)
}

func (s usageSorter) Len() int           { return s.n }
func (s usageSorter) Less(i, j int) bool { return s.less(i, j) }
func (s usageSorter) Swap(i, j int)      { s.swap(i, j) }

// cpuCores prints millicores as kubectl top does ("250m").
func cpuCores(milli int64) string { return fmt.Sprintf("%dm", milli) }

// memMi prints bytes in mebibytes as kubectl top does ("64Mi").
func memMi(b int64) string { return fmt.Sprintf("%dMi", b/(1<<20)) }

func percent(v, of int64) string {
	if of <= 0 {
		return "<unknown>"
	}
	return fmt.Sprintf("%d%%", v*100/of)
}
