package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	"github.com/skiffhq/skiff/proto/codec"
)

// setCmd is `ctl set image`.
func (o *options) setCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "set SUBCOMMAND", Short: "Set specific fields of objects"}
	cmd.AddCommand(o.setImageCmd())
	return cmd
}

// setImages sets container=image pairs ("*" for every container) in a
// pod spec; it names the first container that does not exist.
func setImages(spec *apiv1.PodSpec, images map[string]string) error {
	all := append(append([]*apiv1.Container{}, spec.GetInitContainers()...), spec.GetContainers()...)
	for name, image := range images {
		found := false
		for _, c := range all {
			if name == "*" || c.GetName() == name {
				c.Image = image
				found = true
			}
		}
		if !found {
			var names []string
			for _, c := range all {
				names = append(names, c.GetName())
			}
			return fmt.Errorf("unable to find container named %q (containers: %s)", name, strings.Join(names, ", "))
		}
	}
	return nil
}

func (o *options) setImageCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "image KIND/NAME CONTAINER=IMAGE...",
		Short: "Update container images of a pod template (Deployment, DaemonSet, StatefulSet, ReplicaSet, ReplicationController, Job, CronJob) or Pod",
		Example: `  ctl set image deployment/web web=nginxdemos/hello:0.3
  ctl set image deployment/web '*=busybox:1.36'`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, name, ok := strings.Cut(args[0], "/")
			if !ok || name == "" {
				return fmt.Errorf("give the object as KIND/NAME, got %q", args[0])
			}
			k, err := o.lookup(kind)
			if err != nil {
				return err
			}
			images := map[string]string{}
			for _, a := range args[1:] {
				c, img, ok := strings.Cut(a, "=")
				if !ok || c == "" || img == "" {
					return fmt.Errorf("argument %q: want CONTAINER=IMAGE", a)
				}
				images[c] = img
			}
			c, err := o.connect()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := o.ctx(cmd.Context())
			defer cancel()
			ns := ""
			if k.Namespaced {
				ns = o.ns()
			}
			// Read, change, write with the version read as precondition;
			// retry when someone else wrote in between.
			for attempt := 0; ; attempt++ {
				env, err := c.API().Get(ctx, &apiv1.GetRequest{Kind: k.Name, Namespace: ns, Name: name})
				if err != nil {
					return err
				}
				obj, _, err := o.reg.Unpack(env)
				if err != nil {
					return err
				}
				next := codec.Clone(obj)
				if !k.HasPodSpec() {
					return fmt.Errorf("%s has no pod template", k.Name)
				}
				spec := k.PodSpec(next)
				if spec == nil {
					return fmt.Errorf("%s %s has no pod spec", k.Name, name)
				}
				if err := setImages(spec, images); err != nil {
					return err
				}
				if proto.Equal(obj, next) {
					fmt.Fprintf(o.streams.Out, "%s image unchanged\n", resourceName(k, name))
					return nil
				}
				_, err = client.Update(ctx, c, next)
				if client.IsConflict(err) && attempt < 5 {
					continue
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(o.streams.Out, "%s image updated\n", resourceName(k, name))
				return nil
			}
		},
	}
}
