package cli

import (
	"strings"

	"github.com/spf13/cobra"
)

// verbCommands are kubectl's everyday verbs beyond get/apply/delete: one
// file per family (drain.go, label.go, patch.go, …).
func (o *options) verbCommands() []*cobra.Command {
	return []*cobra.Command{
		o.cordonCmd(), o.uncordonCmd(), o.drainCmd(),
		o.labelCmd(), o.annotateCmd(), o.patchCmd(), o.editCmd(),
		o.runCmd(), o.exposeCmd(),
		o.configCmd(), o.waitCmd(), o.eventsCmd(),
		o.explainCmd(), o.apiResourcesCmd(),
	}
}

// completeObjects completes kubectl's object arguments: a kind, then names
// of it (asked of the API), or KIND/NAME in one word.
func (o *options) completeObjects(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
	if len(args) == 0 {
		if kindName, namePrefix, ok := strings.Cut(prefix, "/"); ok {
			var out []string
			for _, n := range o.namesOf(cmd.Context(), kindName, namePrefix) {
				out = append(out, kindName+"/"+n)
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		}
		return o.kindNames(prefix), cobra.ShellCompDirectiveNoFileComp
	}
	if strings.Contains(args[0], "/") {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return o.namesOf(cmd.Context(), args[0], prefix), cobra.ShellCompDirectiveNoFileComp
}
