package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/api/manifest"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	streamv1 "github.com/skiffhq/skiff/proto/stream/v1"
)

type runOptions struct {
	image, port, restart, labels string
	env                          []string
	stdin, tty, rm, command      bool
	expose                       bool
	podRunningTimeout            time.Duration
	out                          createOutput
}

func (o *options) runCmd() *cobra.Command {
	r := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run NAME --image=IMAGE [--port=PORT] [--env=K=V...] [--labels=K=V,...] [--restart=Always|OnFailure|Never] [-i] [-t] [--rm] [--command] [-- ARG...]",
		Short: "Run a pod from an image",
		Long: `Run creates one pod running IMAGE, labelled run=NAME unless --labels says
otherwise. Arguments after -- are the container's args, or its command with
--command. --expose with --port also creates a ClusterIP Service for it.

With -i (and -t for a terminal) the container keeps its stdin open
(stdinOnce: it closes when the session ends), and run waits for the pod to
run and attaches to it as ctl attach does. With --restart Never or
OnFailure it then waits for the pod to finish and exits with its
container's exit code; --rm deletes the pod after the session, as kubectl
does.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pod, err := r.pod(args[0], args[1:], o.ns())
			if err != nil {
				return err
			}
			if r.tty && !r.stdin {
				return fmt.Errorf("-i/--stdin is required for containers with -t/--tty=true")
			}
			if r.rm && !(r.stdin || r.tty) {
				return fmt.Errorf("--rm should only be used for attached containers (-i or -t)")
			}
			if r.expose && r.port == "" {
				return fmt.Errorf("--port must be set when exposing a service")
			}
			if err := r.out.check(); err != nil {
				return err
			}
			if (r.stdin || r.tty) && r.out.dryRun != "none" {
				return fmt.Errorf("--dry-run cannot be used with -i/-t")
			}
			var c *client.Client
			if r.out.dryRun != "client" {
				if c, err = o.connect(); err != nil {
					return err
				}
				defer c.Close()
			}
			pod.Metadata.Namespace = o.ns()
			objs := []kinds.Object{pod}
			if r.expose {
				objs = append(objs, serviceFor(pod.Metadata.Name, pod.Metadata.Namespace, pod.Metadata.Labels, r.port, "", "", ""))
			}
			ctx, cancel := o.ctx(cmd.Context())
			defer cancel()
			for i, obj := range objs {
				if i > 0 && r.out.output == "yaml" {
					fmt.Fprintln(o.streams.Out, "---")
				}
				if err := o.createOrPrint(ctx, c, obj, r.out, "created"); err != nil {
					return err
				}
			}
			if !(r.stdin || r.tty) {
				return nil
			}
			actx, stop := untilSignal(cmd.Context())
			defer stop()
			err = r.attach(actx, o, c, pod.Metadata.Namespace, pod.Metadata.Name)
			if r.rm {
				dctx, cancel := o.ctx(context.WithoutCancel(cmd.Context()))
				_, _, derr := c.Delete(dctx, "Pod", o.ns(), pod.Metadata.Name, client.DeleteOptions{})
				cancel()
				if derr == nil {
					fmt.Fprintf(o.streams.Out, "pod \"%s\" deleted\n", pod.Metadata.Name)
				}
				err = errors.Join(err, derr)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&r.image, "image", "", "the container image (required)")
	f.StringVar(&r.port, "port", "", "the port the container exposes")
	f.StringArrayVar(&r.env, "env", nil, "environment variable K=V (repeatable)")
	f.StringVarP(&r.labels, "labels", "l", "", "labels K=V,K2=V2 (default run=NAME)")
	f.StringVar(&r.restart, "restart", "Always", "restart policy: Always, OnFailure or Never")
	f.BoolVarP(&r.stdin, "stdin", "i", false, "keep stdin open and attach to it")
	f.BoolVarP(&r.tty, "tty", "t", false, "allocate a TTY")
	f.BoolVar(&r.rm, "rm", false, "delete the pod when the attached session ends")
	f.DurationVar(&r.podRunningTimeout, "pod-running-timeout", time.Minute, "how long to wait for the pod to run before attaching")
	f.BoolVar(&r.command, "command", false, "the arguments after -- are the command, not args")
	f.BoolVar(&r.expose, "expose", false, "also create a Service for the pod (needs --port)")
	r.out.flags(cmd)
	_ = cmd.RegisterFlagCompletionFunc("restart", cobra.FixedCompletions([]string{"Always", "OnFailure", "Never"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// pod builds the pod `ctl run` creates.
func (r *runOptions) pod(name string, extra []string, ns string) (*apiv1.Pod, error) {
	if r.image == "" {
		return nil, fmt.Errorf("--image is required")
	}
	if r.restart != "Always" && r.restart != "OnFailure" && r.restart != "Never" {
		return nil, fmt.Errorf("--restart %q: must be Always, OnFailure or Never", r.restart)
	}
	labels := map[string]string{"run": name}
	if r.labels != "" {
		var err error
		if labels, err = parsePairs(r.labels, ",", "--labels"); err != nil {
			return nil, err
		}
	}
	// As kubectl: stdin closes when the first attach ends.
	ctr := &apiv1.Container{Name: name, Image: r.image, Stdin: r.stdin, StdinOnce: r.stdin, Tty: r.tty}
	if r.command {
		if len(extra) == 0 {
			return nil, fmt.Errorf("--command needs the command after --")
		}
		ctr.Command = extra
	} else {
		ctr.Args = extra
	}
	if r.port != "" {
		p, err := strconv.Atoi(r.port)
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("--port %q: must be a number between 1 and 65535", r.port)
		}
		ctr.Ports = []*apiv1.ContainerPort{{ContainerPort: int32(p)}}
	}
	for _, e := range r.env {
		k, v, ok := strings.Cut(e, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--env %q: must be NAME=VALUE", e)
		}
		ctr.Env = append(ctr.Env, &apiv1.EnvVar{Name: k, Value: v})
	}
	return &apiv1.Pod{Metadata: &apiv1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: &apiv1.PodSpec{Containers: []*apiv1.Container{ctr}, RestartPolicy: r.restart}}, nil
}

// parsePairs parses "k=v<sep>k2=v2".
func parsePairs(s, sep, flag string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, sep) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q: %q is not KEY=VALUE", flag, s, kv)
		}
		out[k] = v
	}
	return out, nil
}

func (o *options) exposeCmd() *cobra.Command {
	var port, targetPort, typ, name, protocol, selector string
	var out createOutput
	cmd := &cobra.Command{
		Use:   "expose (deployment|replicaset|replicationcontroller|pod|service) NAME [--port=PORT] [--target-port=PORT] [--type=ClusterIP|NodePort] [--name=NAME]",
		Short: "Create a Service for the pods of a workload, pod or Service",
		Long: `Expose creates a Service selecting the pods the object selects (a pod: its
labels). Without --port the first container port of its pod template (a
Service: its first port) is used; --target-port defaults to --port.`,
		Args:              cobra.RangeArgs(1, 2),
		ValidArgsFunction: o.completeObjects,
		RunE: func(cmd *cobra.Command, args []string) error {
			if typ != "ClusterIP" && typ != "NodePort" {
				return fmt.Errorf("--type %q: must be ClusterIP or NodePort", typ)
			}
			if err := out.check(); err != nil {
				return err
			}
			return o.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				ts, err := o.targets(ctx, c, args, "", false)
				if err != nil {
					return err
				}
				if len(ts) != 1 {
					return fmt.Errorf("expose takes exactly one object, got %d", len(ts))
				}
				t := ts[0]
				obj, err := o.getObject(ctx, c, t)
				if err != nil {
					return err
				}
				doc, err := manifest.MarshalJSON(obj)
				if err != nil {
					return err
				}
				sel, firstPort, err := exposable(t.kind.Name, doc)
				if err != nil {
					return err
				}
				if selector != "" {
					if sel, err = parsePairs(selector, ",", "--selector"); err != nil {
						return err
					}
				}
				if port == "" {
					if firstPort == "" {
						return fmt.Errorf("couldn't find port via --port flag or introspection: %s %s exposes no port", t.kind.Name, t.name)
					}
					port = firstPort
				}
				if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
					return fmt.Errorf("--port %q: must be a number between 1 and 65535", port)
				}
				if name == "" {
					name = t.name
				}
				return o.createOrPrint(ctx, c, serviceFor(name, t.ns, sel, port, targetPort, typ, protocol), out, "exposed")
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&port, "port", "", "the Service's port")
	f.StringVar(&targetPort, "target-port", "", "the pods' port (number or name; default --port)")
	f.StringVar(&typ, "type", "ClusterIP", "ClusterIP or NodePort")
	f.StringVar(&name, "name", "", "the Service's name (default the object's)")
	f.StringVar(&protocol, "protocol", "TCP", "TCP, UDP or SCTP")
	f.StringVar(&selector, "selector", "", "K=V,… selector instead of the object's")
	out.flags(cmd)
	_ = cmd.RegisterFlagCompletionFunc("type", cobra.FixedCompletions([]string{"ClusterIP", "NodePort"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// exposable reads, from an object's Kubernetes JSON, the labels a Service
// selects its pods by (spec.selector.matchLabels, spec.selector as a map,
// or a pod's own labels) and the first port it names. Any kind shaped so
// can be exposed.
func exposable(kind string, doc []byte) (map[string]string, string, error) {
	var o struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec struct {
			Selector   json.RawMessage `json:"selector"`
			Containers []struct {
				Ports []struct {
					ContainerPort int `json:"containerPort"`
				} `json:"ports"`
			} `json:"containers"`
			Template struct {
				Spec struct {
					Containers []struct {
						Ports []struct {
							ContainerPort int `json:"containerPort"`
						} `json:"ports"`
					} `json:"containers"`
				} `json:"spec"`
			} `json:"template"`
			Ports []struct {
				Port int `json:"port"`
			} `json:"ports"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(doc, &o); err != nil {
		return nil, "", err
	}
	var sel map[string]string
	if len(o.Spec.Selector) > 0 {
		var ls struct {
			MatchLabels      map[string]string `json:"matchLabels"`
			MatchExpressions []json.RawMessage `json:"matchExpressions"`
		}
		var plain map[string]string
		switch {
		case json.Unmarshal(o.Spec.Selector, &plain) == nil:
			sel = plain
		case json.Unmarshal(o.Spec.Selector, &ls) == nil:
			if len(ls.MatchExpressions) > 0 {
				return nil, "", fmt.Errorf("cannot expose a %s: its selector has matchExpressions, which a Service cannot select by", kind)
			}
			sel = ls.MatchLabels
		}
	} else if len(o.Spec.Containers) > 0 {
		sel = o.Metadata.Labels
	}
	if len(sel) == 0 {
		return nil, "", fmt.Errorf("cannot expose a %s: it has no selector (or, a pod, no labels)", kind)
	}
	port := ""
	containers := o.Spec.Containers
	if len(containers) == 0 {
		containers = o.Spec.Template.Spec.Containers
	}
	for _, c := range containers {
		if len(c.Ports) > 0 && port == "" {
			port = strconv.Itoa(c.Ports[0].ContainerPort)
		}
	}
	if port == "" && len(o.Spec.Ports) > 0 {
		port = strconv.Itoa(o.Spec.Ports[0].Port)
	}
	return sel, port, nil
}

// serviceFor is the Service run --expose and expose create.
func serviceFor(name, ns string, selector map[string]string, port, targetPort, typ, protocol string) *apiv1.Service {
	p, _ := strconv.Atoi(port)
	if targetPort == "" {
		targetPort = port
	}
	if protocol == "" {
		protocol = "TCP"
	}
	return &apiv1.Service{Metadata: &apiv1.ObjectMeta{Name: name, Namespace: ns, Labels: selector},
		Spec: &apiv1.ServiceSpec{Selector: selector, Type: typ,
			Ports: []*apiv1.ServicePort{{Port: int32(p), TargetPort: targetPort, Protocol: protocol}}}}
}

// createOutput is kubectl's --dry-run and -o for verbs that create.
type createOutput struct{ dryRun, output string }

func (c *createOutput) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&c.dryRun, "dry-run", "none", "none, client (print only) or server (validated and admitted, not stored)")
	cmd.Flags().Lookup("dry-run").NoOptDefVal = "client"
	cmd.Flags().StringVarP(&c.output, "output", "o", "", "yaml, json or name: print the object instead of a message")
}

func (c *createOutput) check() error {
	if c.dryRun != "none" && c.dryRun != "client" && c.dryRun != "server" {
		return fmt.Errorf("--dry-run %q: must be none, client or server", c.dryRun)
	}
	if c.output != "" && c.output != "yaml" && c.output != "json" && c.output != "name" {
		return fmt.Errorf("-o %q: must be yaml, json or name", c.output)
	}
	return nil
}

// createOrPrint creates obj (or only validates it with --dry-run=server,
// or not at all with client) and prints it as -o asks, else kubectl's
// "KIND/NAME VERB" line.
func (o *options) createOrPrint(ctx context.Context, c *client.Client, obj kinds.Object, out createOutput, verb string) error {
	k, err := o.reg.ForObject(obj)
	if err != nil {
		return err
	}
	kinds.SetTypeMeta(obj, k.APIVersion(), k.Name)
	if out.dryRun != "client" {
		env, err := o.reg.Pack(obj)
		if err != nil {
			return err
		}
		res, err := c.API().Create(ctx, &apiv1.CreateRequest{Object: env, DryRun: out.dryRun == "server"})
		if err != nil {
			return err
		}
		if obj, _, err = o.reg.Unpack(res); err != nil {
			return err
		}
	}
	var b []byte
	switch out.output {
	case "yaml":
		b, err = manifest.MarshalYAML(obj)
	case "json":
		if b, err = manifest.MarshalJSONIndent(obj); err == nil {
			b = append(b, '\n')
		}
	case "name":
		b = []byte(k.Singular + "/" + obj.GetMetadata().GetName() + "\n")
	default:
		suffix := map[string]string{"none": "", "client": " (dry run)", "server": " (server dry run)"}[out.dryRun]
		b = []byte(fmt.Sprintf("%s/%s %s%s\n", k.Singular, obj.GetMetadata().GetName(), verb, suffix))
	}
	if err != nil {
		return err
	}
	_, err = o.streams.Out.Write(b)
	return err
}

// attach is run's session with the pod it created, as kubectl run -i:
// wait until the pod runs (or already finished), attach (or, finished,
// print its log), then with restart policy Never or OnFailure wait for it
// to finish and return its container's exit code.
func (r *runOptions) attach(ctx context.Context, o *options, c *client.Client, ns, name string) error {
	pod, err := r.waitPod(ctx, c, ns, name, r.podRunningTimeout, func(p *apiv1.Pod) bool {
		ph := p.GetStatus().GetPhase()
		return ph == "Running" || ph == "Succeeded" || ph == "Failed"
	})
	if err != nil {
		return fmt.Errorf("pod %s/%s did not start running within %s: %w", ns, name, r.podRunningTimeout, err)
	}
	attached := false
	if pod.GetStatus().GetPhase() == "Running" {
		err = o.streamTo(ctx, c, pod, execFlags{stdin: r.stdin, tty: r.tty, container: name}, nil)
		var exit *ExitError
		switch {
		case errors.As(err, &exit):
			attached = true // the exit code comes from the pod's status below
		case status.Code(err) == codes.FailedPrecondition:
			// It finished between the wait and the attach: show its log.
		case err != nil:
			return err
		default:
			attached = true
		}
	}
	if ctx.Err() != nil {
		return nil // interrupted: detached
	}
	if !attached {
		lctx, cancel := o.ctx(ctx)
		defer cancel()
		ls, err := c.PodStreams().Logs(lctx, &streamv1.LogsRequest{Pod: &streamv1.PodRef{Namespace: ns, Name: name, Container: name}})
		if err != nil {
			return err
		}
		for {
			m, err := ls.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					return err
				}
				break
			}
			if _, err := o.streams.Out.Write(m.GetData()); err != nil {
				return err
			}
		}
	}
	if r.restart == "Always" {
		return nil // no exit code to wait for: the container restarts
	}
	done := func(p *apiv1.Pod) bool {
		ph := p.GetStatus().GetPhase()
		return ph == "Succeeded" || (ph == "Failed" && r.restart == "Never")
	}
	if pod, err = r.waitPod(ctx, c, ns, name, 0, done); err != nil {
		return err
	}
	if pod.GetStatus().GetPhase() == "Succeeded" {
		return nil
	}
	for _, cs := range pod.GetStatus().GetContainerStatuses() {
		if t := cs.GetState().GetTerminated(); cs.GetName() == name && t != nil && t.GetExitCode() != 0 {
			return &ExitError{Code: int(t.GetExitCode())}
		}
	}
	return fmt.Errorf("pod %s/%s failed with unknown exit code", ns, name)
}

// waitPod polls the pod until cond holds (timeout 0: until ctx ends).
func (r *runOptions) waitPod(ctx context.Context, c *client.Client, ns, name string, timeout time.Duration, cond func(*apiv1.Pod) bool) (*apiv1.Pod, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		p, err := client.Get[*apiv1.Pod](ctx, c, ns, name)
		if err == nil && cond(p) {
			return p, nil
		}
		if err != nil && !client.IsUnavailable(err) && ctx.Err() == nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}
