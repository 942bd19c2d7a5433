package cli

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/controlplane/pki"
	adminv1 "github.com/skiffhq/skiff/proto/admin/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// adminClient calls the admin service of the config's control nodes,
// moving to the next one when a node is unavailable.
type adminClient struct {
	servers []string
	conns   []*grpc.ClientConn
	ca      []byte
}

func (o *options) admin() (*adminClient, error) {
	cfg, err := o.loadConfig()
	if err != nil {
		return nil, err
	}
	tc, err := cfg.TLS()
	if err != nil {
		return nil, err
	}
	a := &adminClient{servers: cfg.Servers}
	for _, s := range cfg.Servers {
		conn, err := grpc.NewClient(s, grpc.WithTransportCredentials(credentials.NewTLS(tc.Clone())),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(8<<20)))
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("server %q: %w", s, err)
		}
		a.conns = append(a.conns, conn)
	}
	return a, nil
}

// adminCall dials the admin service, gives the call the request deadline
// and runs it against each control node until one is not Unavailable.
func (o *options) adminCall(cmd *cobra.Command, call func(ctx context.Context, c adminv1.AdminClient) error) error {
	a, err := o.admin()
	if err != nil {
		return err
	}
	defer a.Close()
	ctx, cancel := o.ctx(cmd.Context())
	defer cancel()
	return a.do(func(c adminv1.AdminClient) error { return call(ctx, c) })
}

func (a *adminClient) Close() {
	for _, c := range a.conns {
		_ = c.Close()
	}
}

// do runs call on each server in turn until one is not Unavailable.
func (a *adminClient) do(call func(adminv1.AdminClient) error) error {
	var last error
	for _, c := range a.conns {
		err := call(adminv1.NewAdminClient(c))
		if status.Code(err) != codes.Unavailable {
			return err
		}
		last = err
	}
	return &client.UnavailableError{Servers: a.servers, Last: last}
}

func (o *options) tokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Create, list and revoke join tokens"}
	var role, desc, nodeName string
	var ttl time.Duration
	create := &cobra.Command{
		Use:   "create [--role control|worker] [--ttl 24h] [--node NAME]",
		Short: "Create a join token and print it with the join command",
		Long: `Create a join token and print it with the join command.

A worker may not join under the name of a live Node (one that heartbeated
in the last 40 s). To re-join the machine that holds a name (new disk,
lost data dir), create a token bound to that name with --node NAME: it
joins only under NAME, also while the Node is live. Admins only.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if role != "control" && role != "worker" {
				return fmt.Errorf("--role %q: want control or worker", role)
			}
			if nodeName != "" && role != "worker" {
				return fmt.Errorf("--node %s: only worker tokens are bound to a node; a control node re-joins after `ctl member remove`", nodeName)
			}
			if ttl <= 0 {
				return fmt.Errorf("--ttl %s: must be positive", ttl)
			}
			a, err := o.admin()
			if err != nil {
				return err
			}
			defer a.Close()
			ctx, cancel := o.ctx(cmd.Context())
			defer cancel()
			var resp *adminv1.CreateTokenResponse
			err = a.do(func(c adminv1.AdminClient) (err error) {
				resp, err = c.CreateToken(ctx, &adminv1.CreateTokenRequest{Role: role, TtlSeconds: int64((ttl + time.Second - 1) / time.Second),
					Description: desc, Node: nodeName})
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(o.streams.Out, resp.Token)
			addr := "ADDR"
			if len(resp.ApiAddresses) > 0 {
				addr = resp.ApiAddresses[0]
			}
			flag := ""
			if role == "control" {
				flag = " --control"
			}
			if nodeName != "" {
				flag = " --name " + nodeName
			}
			fmt.Fprintf(o.streams.Err, "join with: ctl join%s --token %s %s   (expires %s)\n", flag, resp.Token, addr,
				resp.Info.GetExpiresAt().AsTime().Local().Format(time.RFC3339))
			return nil
		},
	}
	create.Flags().StringVar(&role, "role", "worker", "what the token lets a machine become: control or worker")
	create.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token is valid")
	create.Flags().StringVar(&desc, "description", "", "a note shown by `ctl token list`")
	create.Flags().StringVar(&nodeName, "node", "", "bind the worker token to this node name (to re-join a machine whose Node is live)")
	list := &cobra.Command{
		Use:   "list",
		Short: "List join tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var resp *adminv1.ListTokensResponse
			if err := o.adminCall(cmd, func(ctx context.Context, c adminv1.AdminClient) (err error) {
				resp, err = c.ListTokens(ctx, &adminv1.ListTokensRequest{})
				return err
			}); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(o.streams.Out, 0, 8, 3, ' ', 0)
			fmt.Fprintln(tw, "ID\tROLE\tSTATE\tEXPIRES\tNODE\tDESCRIPTION")
			for _, t := range resp.Tokens {
				node := t.Node
				if node == "" {
					node = "<any>"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Id, t.Role, t.State, t.ExpiresAt.AsTime().Local().Format(time.RFC3339), node, t.Description)
			}
			return tw.Flush()
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a join token: joins with it are refused from now on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.adminCall(cmd, func(ctx context.Context, c adminv1.AdminClient) error {
				_, err := c.RevokeToken(ctx, &adminv1.RevokeTokenRequest{Id: args[0]})
				return err
			}); err != nil {
				return err
			}
			fmt.Fprintf(o.streams.Out, "token %s revoked\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func (o *options) membersCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "members",
		Short: "List the control nodes: address, voter or not, leader, health",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var resp *adminv1.ListMembersResponse
			if err := o.adminCall(cmd, func(ctx context.Context, c adminv1.AdminClient) (err error) {
				resp, err = c.ListMembers(ctx, &adminv1.ListMembersRequest{})
				return err
			}); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(o.streams.Out, 0, 8, 3, ' ', 0)
			fmt.Fprintln(tw, "ID\tAPI\tSTORE\tROLE\tLEADER\tHEALTHY")
			for _, m := range resp.Members {
				role := "non-voter"
				if m.Voter {
					role = "voter"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Id, orDash(m.ApiAddress), m.RaftAddress, role, yesNo(m.Leader), yesNo(m.Healthy))
			}
			return tw.Flush()
		},
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func (o *options) memberCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "member", Short: "Manage control nodes"}
	cmd.AddCommand(&cobra.Command{
		Use:   "remove ID",
		Short: "Remove a control node from the store's membership (stop it first)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.adminCall(cmd, func(ctx context.Context, c adminv1.AdminClient) error {
				_, err := c.RemoveMember(ctx, &adminv1.RemoveMemberRequest{Id: args[0]})
				if code := status.Code(err); code == codes.Unavailable || code == codes.Unknown {
					// The leader that carried the removal out may be the
					// member removed: it leaves at once and its answer can
					// be lost on the way back. Whether it is gone is in the
					// membership the next leader serves.
					if memberGone(ctx, c, args[0]) {
						return nil
					}
				}
				return err
			}); err != nil {
				return err
			}
			fmt.Fprintf(o.streams.Out, "member %s removed\n", args[0])
			return nil
		},
	})
	return cmd
}

// memberGone polls the membership (for up to 15 s, or ctx) until id is not
// in it; false if it stays or the membership cannot be read.
func memberGone(ctx context.Context, c adminv1.AdminClient, id string) bool {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if resp, err := c.ListMembers(ctx, &adminv1.ListMembersRequest{}); err == nil {
			gone := true
			for _, m := range resp.Members {
				if m.Id == id {
					gone = false
				}
			}
			if gone {
				return true
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

func (o *options) snapshotCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "snapshot", Short: "Back up the cluster state and restore it"}
	cmd.AddCommand(&cobra.Command{
		Use:   "save FILE",
		Short: "Write a consistent backup of the whole cluster state to FILE (the cluster keeps running)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := o.admin()
			if err != nil {
				return err
			}
			defer a.Close()
			ctx, cancel := o.ctx(cmd.Context())
			defer cancel()
			tmp := args[0] + ".part"
			var rev, size int64
			err = a.do(func(c adminv1.AdminClient) error {
				rev, size, err = saveSnapshot(ctx, c, tmp)
				return err
			})
			if err != nil {
				os.Remove(tmp)
				return err
			}
			if err := os.Rename(tmp, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(o.streams.Out, "snapshot of revision %d saved to %s (%d bytes)\n", rev, args[0], size)
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "restore FILE",
		Short: "Replace the whole cluster state with a backup (disaster recovery into a fresh cluster)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return err
			}
			if st.Size() == 0 {
				return fmt.Errorf("%s is empty: not a snapshot", args[0])
			}
			a, err := o.admin()
			if err != nil {
				return err
			}
			defer a.Close()
			ctx, cancel := o.ctx(cmd.Context())
			defer cancel()
			var rev int64
			err = a.do(func(c adminv1.AdminClient) error {
				if _, err := f.Seek(0, io.SeekStart); err != nil {
					return err
				}
				rev, err = restoreSnapshot(ctx, c, f, st.Size())
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(o.streams.Out, "cluster state restored from %s (revision %d)\n", args[0], rev)
			return nil
		},
	})
	return cmd
}

func saveSnapshot(ctx context.Context, c adminv1.AdminClient, path string) (rev, size int64, err error) {
	stream, err := c.SaveSnapshot(ctx, &adminv1.SaveSnapshotRequest{})
	if err != nil {
		return 0, 0, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	for {
		chunk, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, 0, err
		}
		if len(chunk.Data) > 0 {
			if _, err := f.Write(chunk.Data); err != nil {
				return 0, 0, err
			}
			size += int64(len(chunk.Data))
		}
		if chunk.Revision != 0 {
			rev = chunk.Revision
		}
	}
	if rev == 0 {
		return 0, 0, errors.New("the server ended the snapshot without its final message: the file is incomplete")
	}
	return rev, size, f.Sync()
}

func restoreSnapshot(ctx context.Context, c adminv1.AdminClient, r io.Reader, size int64) (int64, error) {
	stream, err := c.RestoreSnapshot(ctx)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 256<<10)
	first := true
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			msg := &adminv1.SnapshotChunk{Data: append([]byte(nil), buf[:n]...)}
			if first {
				msg.Size, first = size, false
			}
			if err := stream.Send(msg); err != nil {
				break // CloseAndRecv returns the server's reason
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return 0, rerr
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return 0, err
	}
	return resp.Revision, nil
}

func (o *options) userCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "Manage users"}
	var role, output string
	var ttl time.Duration
	create := &cobra.Command{
		Use:   "create NAME --role viewer|admin|user [-o FILE]",
		Short: "Make a client config for a user with a certificate for the role",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if role != "viewer" && role != "admin" && role != "user" {
				return fmt.Errorf("--role %q: want viewer, admin or user", role)
			}
			if output == "" {
				output = args[0] + ".conf"
			}
			if _, err := os.Stat(output); err == nil {
				return fmt.Errorf("%s exists: pick another -o FILE or remove it", output)
			}
			key, err := pki.NewKey()
			if err != nil {
				return err
			}
			csr, err := pki.NewCSR(key, "user:"+args[0])
			if err != nil {
				return err
			}
			var resp *adminv1.CreateUserResponse
			if err := o.adminCall(cmd, func(ctx context.Context, c adminv1.AdminClient) (err error) {
				resp, err = c.CreateUser(ctx, &adminv1.CreateUserRequest{Name: args[0], Role: role, CsrPem: csr, TtlSeconds: int64(ttl / time.Second)})
				return err
			}); err != nil {
				return err
			}
			keyPEM, err := pki.EncodeECPrivateKeyPEM(key)
			if err != nil {
				return err
			}
			servers := resp.ApiAddresses
			if len(servers) == 0 {
				cfg, err := o.loadConfig()
				if err != nil {
					return err
				}
				servers = cfg.Servers
			}
			cc := &client.Config{Servers: servers, CertificateAuthorityData: b64(resp.CaBundlePem),
				ClientCertificateData: b64(resp.CertificatePem), ClientKeyData: b64(keyPEM)}
			if err := cc.Save(output); err != nil {
				return err
			}
			abs, _ := filepath.Abs(output)
			fmt.Fprintf(o.streams.Out, "user %s (%s) created: client config %s\n", resp.Identity, role, abs)
			return nil
		},
	}
	create.Flags().StringVar(&role, "role", "", "viewer (read-only), admin, or user (only what RBAC bindings of user:NAME or group skiff:users grant)")
	create.Flags().StringVarP(&output, "output", "o", "", "client config file to write (default NAME.conf)")
	create.Flags().DurationVar(&ttl, "ttl", 0, "certificate lifetime (default 90 days; renew with `ctl user renew`)")
	cmd.AddCommand(create, o.userRevokeCmd(), o.userRenewCmd())
	return cmd
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
