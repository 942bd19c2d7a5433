package cli

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/skiffhq/skiff/cmd/ctl/internal/explain"
	"github.com/skiffhq/skiff/controlplane/api/kinds"
)

func (o *options) explainCmd() *cobra.Command {
	var recursive bool
	cmd := &cobra.Command{
		Use:     "explain KIND[.FIELD...]",
		Short:   "Document a kind or one of its fields (from the API's schema)",
		Example: "  ctl explain pods\n  ctl explain deployment.spec.strategy\n  ctl explain pdb.spec --recursive",
		Args:    cobra.ExactArgs(1),
		ValidArgsFunction: func(_ *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return o.kindNames(prefix), cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			parts := strings.Split(args[0], ".")
			k, err := o.lookup(parts[0])
			if err != nil {
				return err
			}
			version := k.APIVersion()
			if i := strings.LastIndex(version, "/"); i >= 0 {
				version = version[i+1:]
			}
			return explain.Explain(o.streams.Out, explain.Kind{Name: k.Name, Group: k.Group, Version: version,
				Message: k.New().ProtoReflect().Descriptor()}, parts[1:], recursive)
		},
	}
	cmd.Flags().BoolVar(&recursive, "recursive", false, "list every nested field")
	return cmd
}

// kindNames are the names a kind may be given by (plural, short names).
func (o *options) kindNames(prefix string) []string {
	var out []string
	for _, k := range o.reg.Kinds() {
		for _, n := range append([]string{k.Plural}, k.ShortNames...) {
			if strings.HasPrefix(n, prefix) {
				out = append(out, n)
			}
		}
	}
	return out
}

func (o *options) apiResourcesCmd() *cobra.Command {
	var namespaced, output string
	cmd := &cobra.Command{
		Use:   "api-resources [--namespaced=true|false] [-o wide|name]",
		Short: "List the kinds the API serves",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if namespaced != "" && namespaced != "true" && namespaced != "false" {
				return fmt.Errorf("--namespaced %q: must be true or false", namespaced)
			}
			if output != "" && output != "wide" && output != "name" {
				return fmt.Errorf("-o %q: must be wide or name", output)
			}
			ks := o.reg.Kinds()
			sort.Slice(ks, func(i, j int) bool {
				if ks[i].Group != ks[j].Group {
					return ks[i].Group < ks[j].Group
				}
				return ks[i].Plural < ks[j].Plural
			})
			tw := tabwriter.NewWriter(o.streams.Out, 0, 8, 3, ' ', 0)
			if output != "name" {
				fmt.Fprint(tw, "NAME\tSHORTNAMES\tAPIVERSION\tNAMESPACED\tKIND")
				if output == "wide" {
					fmt.Fprint(tw, "\tVERBS")
				}
				fmt.Fprintln(tw)
			}
			for _, k := range ks {
				if namespaced != "" && fmt.Sprint(k.Namespaced) != namespaced {
					continue
				}
				if output == "name" {
					fmt.Fprintln(tw, resourceWithGroup(k))
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s", k.Plural, strings.Join(k.ShortNames, ","), k.APIVersion(), k.Namespaced, k.Name)
				if output == "wide" {
					verbs := "create,delete,get,list,patch,update,watch"
					if k.Name == "Pod" {
						verbs += ",evict"
					}
					fmt.Fprintf(tw, "\t[%s]", verbs)
				}
				fmt.Fprintln(tw)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&namespaced, "namespaced", "", "only namespaced (true) or cluster-scoped (false) kinds")
	cmd.Flags().StringVarP(&output, "output", "o", "", "wide or name")
	return cmd
}

func resourceWithGroup(k *kinds.Kind) string {
	if k.Group == "" {
		return k.Plural
	}
	return k.Plural + "." + k.Group
}
