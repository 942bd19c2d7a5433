package cli

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

func (o *options) scaleCmd() *cobra.Command {
	var replicas int32
	var current int32
	cmd := &cobra.Command{
		Use:               "scale KIND NAME --replicas=N",
		Short:             "Set the replica count of a Deployment, ReplicaSet, ReplicationController or StatefulSet",
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: o.completeKindThenName,
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := o.lookup(args[0])
			if err != nil {
				return err
			}
			if !k.Scalable() {
				return fmt.Errorf("%s cannot be scaled (%s can)", k.Name, scalableKinds(o.reg))
			}
			if !cmd.Flags().Changed("replicas") || replicas < 0 {
				return fmt.Errorf("--replicas=N (N >= 0) is required")
			}
			c, err := o.connect()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := o.ctx(cmd.Context())
			defer cancel()
			patch := map[string]any{"spec": map[string]any{"replicas": replicas}}
			if cmd.Flags().Changed("current-replicas") {
				// Conditional: read the current count and pin the version it was read at.
				env, err := c.API().Get(ctx, &apiv1.GetRequest{Kind: k.Name, Namespace: o.ns(), Name: args[1]})
				if err != nil {
					return err
				}
				obj, _, err := o.reg.Unpack(env)
				if err != nil {
					return err
				}
				n := int32(1) // Kubernetes' default when unset
				if r := k.Replicas(obj); r != nil {
					n = *r
				}
				if n != current {
					return fmt.Errorf("expected %d replicas, %s has %d", current, args[1], n)
				}
				patch["metadata"] = map[string]any{"resourceVersion": obj.GetMetadata().GetResourceVersion()}
			}
			body, _ := json.Marshal(patch)
			if _, err := c.API().Patch(ctx, &apiv1.PatchRequest{Kind: k.Name, Namespace: o.ns(), Name: args[1], Patch: body}); err != nil {
				return err
			}
			fmt.Fprintf(o.streams.Out, "%s scaled\n", resourceName(k, args[1]))
			return nil
		},
	}
	cmd.Flags().Int32Var(&replicas, "replicas", 0, "the new replica count")
	cmd.Flags().Int32Var(&current, "current-replicas", 0, "only scale if the count is this now")
	return cmd
}

// scalableKinds names the kinds `ctl scale` takes, for its error.
func scalableKinds(reg *kinds.Registry) string {
	var names []string
	for _, k := range reg.Kinds() {
		if k.Scalable() {
			names = append(names, k.Name)
		}
	}
	return strings.Join(names, ", ")
}

func (o *options) createCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "create", Short: "Create an object from flags"}
	cmd.AddCommand(&cobra.Command{
		Use:     "namespace NAME",
		Aliases: []string{"ns"},
		Short:   "Create a namespace",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.connect()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := o.ctx(cmd.Context())
			defer cancel()
			if _, err := client.Create(ctx, c, &apiv1.Namespace{Metadata: &apiv1.ObjectMeta{Name: args[0]}}); err != nil {
				return err
			}
			fmt.Fprintf(o.streams.Out, "namespace/%s created\n", args[0])
			return nil
		},
	})
	return cmd
}

func (o *options) versionCmd() *cobra.Command {
	var clientOnly bool
	return &cobra.Command{
		Use:   "version",
		Short: "Print the client and server versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(o.streams.Out, "Client Version: %s\n", Version)
			if clientOnly {
				return nil
			}
			c, err := o.connect()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := o.ctx(cmd.Context())
			defer cancel()
			v, err := c.API().Version(ctx, &apiv1.VersionRequest{})
			if err != nil {
				return err
			}
			fmt.Fprintf(o.streams.Out, "Server Version: %s (node %s, leader %s, revision %d)\n", v.Version, v.Node, v.LeaderId, v.Revision)
			return nil
		},
	}
}
