package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// errCannot makes `ctl auth can-i` exit 1 on "no" (as kubectl) after it
// printed the answer.
var errCannot = errors.New("no")

func (o *options) authCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "auth", Short: "Inspect authorization"}
	var as string
	var asGroups []string
	var quiet bool
	canI := &cobra.Command{
		Use:   "can-i VERB RESOURCE [NAME]",
		Short: "Check whether an action is allowed",
		Long: `Check whether an action is allowed: prints yes or no (exit status 1 on no)
and, with -v, why. RESOURCE is a plural, kind or short name, with a
subresource after a slash ("pods/log", "pods/exec"); -n is the namespace
(--all-namespaces: cluster-wide). --as USER (and --as-group GROUP) asks for
another subject; only those who may impersonate users (cluster-admin) may.`,
		Args: cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &apiv1.AccessReviewRequest{Verb: args[0], Resource: args[1], User: as, Groups: asGroups}
			if len(args) == 3 {
				req.Name = args[2]
			}
			if len(asGroups) > 0 && as == "" {
				return fmt.Errorf("--as-group needs --as")
			}
			a, err := o.admin()
			if err != nil {
				return err
			}
			defer a.Close()
			if !o.allNamespaces {
				req.Namespace = o.ns()
				if k, err := o.reg.Lookup(firstPart(args[1])); err == nil && !k.Namespaced {
					req.Namespace = ""
				}
			}
			ctx, cancel := o.ctx(cmd.Context())
			defer cancel()
			var resp *apiv1.AccessReviewResponse
			var last error
			for _, c := range a.conns {
				resp, last = apiv1.NewAuthorizationClient(c).AccessReview(ctx, req)
				if status.Code(last) != codes.Unavailable {
					break
				}
			}
			if last != nil {
				if status.Code(last) == codes.Unavailable {
					return &client.UnavailableError{Servers: a.servers, Last: last}
				}
				return last
			}
			if resp.GetAllowed() {
				fmt.Fprintln(o.streams.Out, "yes")
			} else {
				fmt.Fprintln(o.streams.Out, "no")
			}
			if !quiet {
				fmt.Fprintf(o.streams.Err, "%s (%s)\n", resp.GetReason(), resp.GetUser())
			}
			if !resp.GetAllowed() {
				return errCannot
			}
			return nil
		},
	}
	f := canI.Flags()
	f.StringVar(&as, "as", "", "user to ask for instead of yourself (e.g. user:alice, system:serviceaccount:NS:NAME); admins only")
	f.StringSliceVar(&asGroups, "as-group", nil, "group of the --as user (repeatable)")
	f.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "ask cluster-wide")
	f.BoolVarP(&quiet, "quiet", "q", false, "print only yes or no")
	cmd.AddCommand(canI)
	return cmd
}

func firstPart(resource string) string {
	for i, c := range resource {
		if c == '/' {
			return resource[:i]
		}
	}
	return resource
}
