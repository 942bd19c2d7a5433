package cli

import "github.com/spf13/cobra"

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
