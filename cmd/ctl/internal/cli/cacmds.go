package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	adminv1 "github.com/skiffhq/skiff/proto/admin/v1"
)

// caCmd is `ctl ca rotate start|status|finish`: replacing the cluster CA
// without a restart (admins only; start and finish are audited).
func (o *options) caCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "ca", Short: "Manage the cluster CA"}
	rotate := &cobra.Command{
		Use:   "rotate start|status|finish",
		Short: "Replace the cluster CA: start, watch the renewals, finish",
		Long: `Replace the cluster CA in three steps, with no restart:

  start   a new CA signs every certificate from now on; the old one stays
          trusted beside it on every control node. Join tokens made from now
          on pin the new CA; older tokens work until finish.
  status  lists the identities whose certificate still comes from the old
          CA. Workers renew before their certificate is due (and take the
          new CA from the renewal's answer); users run ` + "`ctl user renew`" + `.
  finish  refused while a worker still holds an old certificate; then the
          control nodes renew with the new CA and the old CA is dropped
          everywhere: its certificates are refused on both ports.

Admins only. The control nodes' admin.conf is rewritten with a certificate
of the new CA at each step.`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"start", "status", "finish"},
		RunE: func(cmd *cobra.Command, args []string) error {
			var resp *adminv1.RotateCAResponse
			if err := o.adminCall(cmd, func(ctx context.Context, c adminv1.AdminClient) (err error) {
				resp, err = c.RotateCA(ctx, &adminv1.RotateCARequest{Phase: args[0]})
				return err
			}); err != nil {
				return err
			}
			o.printRotation(args[0], resp)
			return nil
		},
	}
	cmd.AddCommand(rotate)
	return cmd
}

func shortPin(p string) string {
	if len(p) > 16 {
		return p[:16]
	}
	return p
}

func (o *options) printRotation(phase string, r *adminv1.RotateCAResponse) {
	out := o.streams.Out
	state := "no rotation in progress"
	if r.Rotation != "" {
		state = "rotation " + r.Rotation
	}
	switch phase {
	case "start":
		fmt.Fprintln(out, "CA rotation started: the new CA signs every certificate from now on; the old one stays trusted until `ctl ca rotate finish`.")
	case "finish":
		fmt.Fprintln(out, "CA rotation finished: certificates of the old CA are refused from now on.")
	}
	trusted := make([]string, 0, len(r.TrustedPins))
	for _, p := range r.TrustedPins {
		trusted = append(trusted, shortPin(p))
	}
	fmt.Fprintf(out, "%s; signer %s; trusted %s\n", state, shortPin(r.SignerPin), strings.Join(trusted, ", "))
	if len(r.Pending) == 0 {
		if r.Rotation != "" {
			fmt.Fprintln(out, "every recorded certificate comes from the signer")
		}
		return
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IDENTITY\tISSUER\tEXPIRES\tBLOCKS FINISH")
	for _, p := range r.Pending {
		exp := "-"
		if p.NotAfter != nil {
			exp = p.NotAfter.AsTime().UTC().Format(time.RFC3339)
		}
		blocks := "no"
		if p.BlocksFinish {
			blocks = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s (%s)\t%s\t%s\n", p.Identity, p.Issuer, shortPin(p.IssuerPin), exp, blocks)
	}
	_ = tw.Flush()
}
