package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	adminv1 "github.com/skiffhq/skiff/proto/admin/v1"
)

// revokeCmd is `ctl user revoke NAME` or `ctl node revoke NAME`: every
// certificate issued to the identity until now is refused on every control
// node (admins only; audited).
func (o *options) revokeCmd(what, identity string, call func(adminv1.AdminClient, context.Context, *adminv1.RevokeIdentityRequest, ...grpc.CallOption) (*adminv1.RevokeIdentityResponse, error)) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "revoke NAME [--reason TEXT]",
		Short: fmt.Sprintf("Refuse every certificate issued to %s<NAME> so far, on every control node", identity),
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var resp *adminv1.RevokeIdentityResponse
			if err := o.adminCall(cmd, func(ctx context.Context, c adminv1.AdminClient) (err error) {
				resp, err = call(c, ctx, &adminv1.RevokeIdentityRequest{Name: args[0], Reason: reason})
				return err
			}); err != nil {
				return err
			}
			fmt.Fprintf(o.streams.Out, "%s %s revoked: its certificates issued until %s are refused (record kept until %s)\n",
				what, resp.Identity, resp.RevokedAt.AsTime().UTC().Format(time.RFC3339), resp.Expires.AsTime().UTC().Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, kept with the revocation")
	return cmd
}

func (o *options) userRevokeCmd() *cobra.Command {
	return o.revokeCmd("user", "user:", adminv1.AdminClient.RevokeUser)
}

// nodeCmd manages worker nodes' credentials.
func (o *options) nodeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Manage worker nodes' credentials"}
	cmd.AddCommand(o.revokeCmd("node", "node:", adminv1.AdminClient.RevokeNode))
	return cmd
}
