package cli

import "github.com/spf13/cobra"

// streamCommands are the verbs that reach into pods' containers through
// the API server's relay to the node (proto/stream/v1).
func (o *options) streamCommands() []*cobra.Command {
	return []*cobra.Command{o.logsCmd(), o.execCmd(), o.attachCmd(), o.portForwardCmd(), o.cpCmd()}
}
