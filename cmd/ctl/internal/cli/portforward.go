package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
	streamv1 "github.com/skiffhq/skiff/proto/stream/v1"
)

// portPair is one LOCAL:REMOTE of port-forward.
type portPair struct {
	local  int
	remote string // a number, or a service's port name
}

func parsePortPairs(args []string) ([]portPair, error) {
	var out []portPair
	for _, a := range args {
		localS, remote, found := strings.Cut(a, ":")
		if !found {
			localS, remote = a, a
		}
		local := 0
		if localS != "" {
			n, err := strconv.Atoi(localS)
			if err != nil || n < 0 || n > 65535 {
				return nil, fmt.Errorf("port %q: local port %q is not a number 0-65535", a, localS)
			}
			local = n
		}
		if remote == "" {
			return nil, fmt.Errorf("port %q: the remote port is missing (LOCAL:REMOTE)", a)
		}
		out = append(out, portPair{local: local, remote: remote})
	}
	return out, nil
}

func (o *options) portForwardCmd() *cobra.Command {
	var address string
	cmd := &cobra.Command{
		Use:   "port-forward (POD | TYPE/NAME) [LOCAL_PORT:]REMOTE_PORT [...[LOCAL_PORT_N:]REMOTE_PORT_N]",
		Short: "Forward local ports to a pod",
		Long: `Forward local TCP ports to a pod's ports, as kubectl port-forward does,
until interrupted. TYPE/NAME may be svc/NAME (a ready pod behind the
service, its port mapped to the target port), deploy/NAME and the like.
":REMOTE" or "0:REMOTE" picks a free local port. Each connection is its
own stream through the API server to the pod's node, all on one
connection to the API server. Needs an admin; audited.`,
		Example: `  ctl port-forward pod/web-1 8080:80
  ctl port-forward svc/web :80 9443:443`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			pairs, err := parsePortPairs(args[1:])
			if err != nil {
				return err
			}
			ctx, stop := untilSignal(cmd.Context())
			defer stop()
			return o.portForward(ctx, address, args[0], pairs)
		},
		ValidArgsFunction: o.completeNames("Pod"),
	}
	cmd.Flags().StringVar(&address, "address", "localhost", "local address to listen on (localhost: 127.0.0.1)")
	return cmd
}

func (o *options) portForward(ctx context.Context, address, target string, pairs []portPair) error {
	c, err := o.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	lookup, cancel := o.ctx(ctx)
	pod, ports, err := o.forwardTarget(lookup, c, o.ns(), target, pairs)
	cancel()
	if err != nil {
		return err
	}
	if address == "localhost" {
		address = "127.0.0.1"
	}
	var lis []net.Listener
	defer func() {
		for _, l := range lis {
			l.Close()
		}
	}()
	for i, p := range pairs {
		l, err := net.Listen("tcp", net.JoinHostPort(address, strconv.Itoa(p.local)))
		if err != nil {
			return fmt.Errorf("listen for %d: %w", ports[i], err)
		}
		lis = append(lis, l)
		fmt.Fprintf(o.streams.Out, "Forwarding from %s -> %d\n", l.Addr(), ports[i])
	}
	ref := &streamv1.PodRef{Namespace: pod.GetMetadata().GetNamespace(), Name: pod.GetMetadata().GetName()}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	errs := make(chan error, len(lis))
	for i, l := range lis {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				conn, err := l.Accept()
				if err != nil {
					if ctx.Err() == nil {
						errs <- err
					}
					return
				}
				fmt.Fprintf(o.streams.Out, "Handling connection for %d\n", ports[i])
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := forwardConn(ctx, c, ref, int32(ports[i]), conn); err != nil {
						fmt.Fprintf(o.streams.Err, "error forwarding port %d to pod %s: %v\n", ports[i], ref.GetName(), Message(err))
					}
				}()
			}
		}()
	}
	go func() {
		<-ctx.Done()
		for _, l := range lis {
			l.Close()
		}
	}()
	select {
	case <-ctx.Done():
		return nil
	case err := <-errs:
		stop()
		return err
	}
}

// forwardConn carries one local connection over its own stream. The
// local side closing its writes half-closes the stream; the pod's side
// ending closes the local connection.
func forwardConn(ctx context.Context, c *client.Client, ref *streamv1.PodRef, port int32, conn net.Conn) error {
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.PodStreams().PortForward(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&streamv1.PortForwardFrame{Frame: &streamv1.PortForwardFrame_Start{Start: &streamv1.PortForwardStart{Pod: ref, Port: port}}}); err != nil {
		return callStatus(err, stream.Recv)
	}
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := conn.Read(buf)
			if n > 0 {
				if stream.Send(&streamv1.PortForwardFrame{Frame: &streamv1.PortForwardFrame_Data{Data: buf[:n]}}) != nil {
					return
				}
			}
			if err != nil {
				_ = stream.CloseSend()
				return
			}
		}
	}()
	for {
		f, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := conn.Write(f.GetData()); err != nil {
			return nil // the local side went away
		}
	}
}

// forwardTarget picks the pod and the pod's port numbers for pairs: for
// svc/NAME a running pod its selector matches, each service port (by
// number or name) mapped to its target port (a number, or a named
// container port of that pod).
func (o *options) forwardTarget(ctx context.Context, c *client.Client, ns, target string, pairs []portPair) (*apiv1.Pod, []int, error) {
	kind, name, _ := strings.Cut(target, "/")
	if k, err := o.lookup(kind); err == nil && k.Name == "Service" && name != "" {
		svc, err := client.Get[*apiv1.Service](ctx, c, ns, name)
		if err != nil {
			return nil, nil, err
		}
		sel := svc.GetSpec().GetSelector()
		if len(sel) == 0 {
			return nil, nil, fmt.Errorf("service/%s has no selector: no pods to forward to", name)
		}
		pods, _, err := client.List[*apiv1.Pod](ctx, c, client.ListOptions{Namespace: ns, LabelSelector: selectorOf(sel)})
		if err != nil {
			return nil, nil, err
		}
		sortPods(pods)
		if len(pods) == 0 || pods[0].GetStatus().GetPhase() != "Running" {
			return nil, nil, fmt.Errorf("service/%s: no running pod behind it", name)
		}
		pod := pods[0]
		var ports []int
		for _, p := range pairs {
			sp := serviceTargetPort(svc, p.remote)
			if sp == "" {
				return nil, nil, fmt.Errorf("service/%s has no port %s", name, p.remote)
			}
			n, err := podPort(pod, sp)
			if err != nil {
				return nil, nil, err
			}
			ports = append(ports, n)
		}
		return pod, ports, nil
	}
	pod, err := o.onePod(ctx, c, ns, target)
	if err != nil {
		return nil, nil, err
	}
	var ports []int
	for _, p := range pairs {
		n, err := podPort(pod, p.remote)
		if err != nil {
			return nil, nil, err
		}
		ports = append(ports, n)
	}
	return pod, ports, nil
}

// serviceTargetPort is the target port (number or name) of the service's
// port that remote names by number or name.
func serviceTargetPort(svc *apiv1.Service, remote string) string {
	for _, sp := range svc.GetSpec().GetPorts() {
		if strconv.Itoa(int(sp.GetPort())) == remote || (sp.GetName() != "" && sp.GetName() == remote) {
			if t := sp.GetTargetPort(); t != "" && t != "0" {
				return t
			}
			return strconv.Itoa(int(sp.GetPort()))
		}
	}
	return ""
}

// podPort resolves a port number or a named container port of pod.
func podPort(pod *apiv1.Pod, port string) (int, error) {
	if n, err := strconv.Atoi(port); err == nil {
		if n < 1 || n > 65535 {
			return 0, fmt.Errorf("port %d: want 1-65535", n)
		}
		return n, nil
	}
	var names []string
	for _, ct := range pod.GetSpec().GetContainers() {
		for _, cp := range ct.GetPorts() {
			if cp.GetName() == port {
				return int(cp.GetContainerPort()), nil
			}
			if cp.GetName() != "" {
				names = append(names, cp.GetName())
			}
		}
	}
	sort.Strings(names)
	return 0, fmt.Errorf("pod/%s has no port named %q (named ports: %v)", pod.GetMetadata().GetName(), port, names)
}

// selectorOf writes a map selector as "k1=v1,k2=v2" (sorted).
func selectorOf(sel map[string]string) string {
	parts := make([]string, 0, len(sel))
	for k, v := range sel {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}
