package cli

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	adminv1 "github.com/skiffhq/skiff/proto/admin/v1"
)

// gossipCmd is `ctl gossip key list|install|use|remove`: rotating the
// gossip encryption key as `consul keyring` does (admins only; changes
// are audited).
func (o *options) gossipCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "gossip", Short: "Manage the gossip membership"}
	key := &cobra.Command{
		Use:   "key list|install KEY|use KEY|remove KEY",
		Short: "List and rotate the gossip encryption keys",
		Long: `List and rotate the keys every member encrypts gossip with, in three
steps, each reaching every member (control nodes within a second, workers
within 5 s) before the next:

  install KEY  every member also decrypts with KEY
  use KEY      every member encrypts with KEY (it must be installed)
  remove KEY   nobody decrypts with KEY any longer (not the key in use)
  list         each key's fingerprint (never the key), whether members
               encrypt with it, and how many live members hold it

KEY is base64 of 16, 24 or 32 random bytes (` + "`head -c 32 /dev/urandom | base64`" + `).
A rotation is finished (use, remove) before the next install. Admins only.`,
		Args:      cobra.RangeArgs(1, 2),
		ValidArgs: []string{"list", "install", "use", "remove"},
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &adminv1.GossipKeyringRequest{Op: args[0]}
			switch {
			case args[0] == "list" && len(args) != 1:
				return fmt.Errorf("gossip key list takes no key")
			case args[0] != "list" && len(args) != 2:
				return fmt.Errorf("gossip key %s needs the key (base64)", args[0])
			case len(args) == 2:
				k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(args[1]))
				if err != nil {
					return fmt.Errorf("key: not base64: %w", err)
				}
				req.Key = k
			}
			var resp *adminv1.GossipKeyringResponse
			if err := o.adminCall(cmd, func(ctx context.Context, c adminv1.AdminClient) (err error) {
				resp, err = c.GossipKeyring(ctx, req)
				return err
			}); err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "FINGERPRINT\tPRIMARY\tMEMBERS")
			for _, k := range resp.GetKeys() {
				primary := ""
				if k.GetPrimary() {
					primary = "*"
				}
				fmt.Fprintf(w, "%s\t%s\t%d/%d\n", k.GetFingerprint(), primary, k.GetMembers(), resp.GetMembers())
			}
			return w.Flush()
		},
	}
	cmd.AddCommand(key)
	return cmd
}
