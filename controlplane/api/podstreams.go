package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/codec"
	streamv1 "github.com/skiffhq/skiff/proto/stream/v1"
)

// The relay of PodStreams to the agents' NodeStreams. A call is
// authorized as Kubernetes authorizes the same subresource (verb get on
// pods/log; create on pods/exec, pods/attach, pods/portforward), audited
// (Config.NodeStreams.Audit), then relayed message by message to the
// agent of the pod's node: each message is received from one side and
// sent to the other before the next is read, so gRPC's flow control on
// either side holds the other back (nothing queues here). The node's
// stream lives in the user's call's context: either side going away ends
// both.

// Stream subresources of pods, as Kubernetes names them.
const (
	SubresourceLog         = "log"
	SubresourceExec        = "exec"
	SubresourceAttach      = "attach"
	SubresourcePortForward = "portforward"
)

// NodeStreamWindow is the HTTP/2 flow-control window of each relayed
// stream from a node: bulk output (logs, cp) flows from the node, and
// this is what may be in flight before the user's side takes it —
// bounded, and large enough that window updates do not set the pace on
// a busy host (eight of the agent's 256 KiB log chunks).
const NodeStreamWindow = 2 << 20

// nodeStreamBuffer is the connection's read and write buffer: gRPC's
// default (32 KiB) costs a system call per two 16 KiB frames of a bulk
// stream.
const nodeStreamBuffer = 256 << 10

// NodeStreamDialOptions are the HTTP/2 settings of a connection to a
// node's stream port: a window of NodeStreamWindow per stream, four per
// connection (every stream to the node shares it).
func NodeStreamDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithInitialWindowSize(NodeStreamWindow), grpc.WithInitialConnWindowSize(4 * NodeStreamWindow),
		grpc.WithWriteBufferSize(nodeStreamBuffer), grpc.WithReadBufferSize(nodeStreamBuffer),
	}
}

// DefaultNodeStreamPort is where an agent serves NodeStreams when its
// Node does not say (status.daemonEndpoints.kubeletEndpoint.Port).
const DefaultNodeStreamPort = 7445

// ErrNodeStreamsOff: this server has no way to reach nodes' stream ports.
var ErrNodeStreamsOff = errors.New("this API server does not relay streams to nodes")

// NodeStreamsConfig is how the API server reaches the agents.
type NodeStreamsConfig struct {
	// TLS is the client TLS for dialling node at ip (the control node's
	// certificate; the node must prove to be that node). nil turns the
	// relay off: calls fail with Unavailable.
	TLS func(node string, ip netip.Addr) *tls.Config
	// Audit records exec, attach and port-forward calls (nil: none).
	Audit func(ctx context.Context, r StreamAudit)
}

// StreamAudit is one audited stream call.
type StreamAudit struct {
	Identity Identity
	// Subresource is exec, attach or portforward.
	Subresource          string
	Namespace, Pod, Node string
	Container            string
	Command              []string
	Port                 int32
	// Err is the refusal or failure before the relay began, as the
	// caller's gRPC status; nil when it began.
	Err error
}

// nodeConns keeps one gRPC connection per node address: every stream to
// that node (port-forward's many connections too) shares it.
type nodeConns struct {
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func (n *nodeConns) get(cfg NodeStreamsConfig, node string, ip netip.Addr, port int) (*grpc.ClientConn, error) {
	if cfg.TLS == nil {
		return nil, ErrNodeStreamsOff
	}
	addr := net.JoinHostPort(ip.String(), strconv.Itoa(port))
	key := node + "@" + addr
	n.mu.Lock()
	defer n.mu.Unlock()
	if c, ok := n.conns[key]; ok {
		return c, nil
	}
	c, err := grpc.NewClient("passthrough:///"+addr, append(NodeStreamDialOptions(),
		grpc.WithTransportCredentials(credentials.NewTLS(cfg.TLS(node, ip))),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 10 * time.Second}))...)
	if err != nil {
		return nil, fmt.Errorf("node %s at %s: %w", node, addr, err)
	}
	if n.conns == nil {
		n.conns = map[string]*grpc.ClientConn{}
	}
	n.conns[key] = c
	return c, nil
}

func (n *nodeConns) closeAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for k, c := range n.conns {
		_ = c.Close()
		delete(n.conns, k)
	}
}

// podStreams implements streamv1.PodStreamsServer.
type podStreams struct {
	streamv1.UnimplementedPodStreamsServer
	s *Server
}

// target is where a pod's stream goes.
type target struct {
	ref  *streamv1.PodRef // with the uid filled in
	node string
	conn streamv1.NodeStreamsClient
}

// open authorizes the call on the pod and finds its node.
func (p *podStreams) open(ctx context.Context, verb, sub string, ref *streamv1.PodRef) (*target, error) {
	ns, name := ref.GetNamespace(), ref.GetName()
	if name == "" {
		return nil, fmt.Errorf("%w: pod.name: required", ErrInvalid)
	}
	if ns == "" {
		ns = "default"
	}
	if err := p.s.authorize(ctx, verb, "Pod", sub, ns, name); err != nil {
		return nil, err
	}
	st, err := p.s.mustGet(ctx, p.s.kind("Pod"), ns, name)
	if err != nil {
		return nil, err
	}
	pod, ok := st.obj.(*apiv1.Pod)
	if !ok {
		return nil, fmt.Errorf("pod %s/%s: stored as %T", ns, name, st.obj)
	}
	nodeName := pod.GetSpec().GetNodeName()
	if nodeName == "" {
		return nil, fmt.Errorf("%w: pod %s/%s is not scheduled to a node yet", ErrNotBindable, ns, name)
	}
	nst, err := p.s.mustGet(ctx, p.s.kind("Node"), "", nodeName)
	if err != nil {
		return nil, err
	}
	node, _ := nst.obj.(*apiv1.Node)
	var ip netip.Addr
	for _, a := range node.GetStatus().GetAddresses() {
		if a.GetType() == "InternalIP" {
			if ip, err = netip.ParseAddr(a.GetAddress()); err == nil {
				break
			}
		}
	}
	if !ip.IsValid() {
		return nil, fmt.Errorf("%w: node %s reports no InternalIP to reach its stream port at", ErrNotBindable, nodeName)
	}
	port := int(node.GetStatus().GetDaemonEndpoints().GetKubeletEndpoint().GetPort())
	if port <= 0 || port > 65535 {
		port = DefaultNodeStreamPort
	}
	cc, err := p.s.nodeConns.get(p.s.cfg.NodeStreams, nodeName, ip, port)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	out := proto.Clone(ref).(*streamv1.PodRef)
	out.Namespace, out.Uid = ns, pod.GetMetadata().GetUid()
	return &target{ref: out, node: nodeName, conn: streamv1.NewNodeStreamsClient(cc)}, nil
}

func (p *podStreams) audit(ctx context.Context, r StreamAudit) {
	if p.s.cfg.NodeStreams.Audit == nil {
		return
	}
	r.Identity, _ = IdentityFrom(ctx)
	p.s.cfg.NodeStreams.Audit(ctx, r)
}

// relayErr maps a failure to the caller's status: a node's status passes
// as it is (it already names the pod and container), ours are mapped.
func relayErr(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return toStatus(err)
}

// sendFailed is the node's status when sending to it failed: gRPC's Send
// reports only io.EOF, the reason comes from the next Recv.
func sendFailed[T any](err error, recv func() (T, error)) error {
	if _, rerr := recv(); rerr != nil && !errors.Is(rerr, io.EOF) {
		return relayErr(rerr)
	}
	return status.Errorf(codes.Unavailable, "the node ended the stream before it started: %v", err)
}

// Logs implements PodStreams.
func (p *podStreams) Logs(req *streamv1.LogsRequest, stream streamv1.PodStreams_LogsServer) error {
	t, err := p.open(stream.Context(), "get", SubresourceLog, req.GetPod())
	if err != nil {
		return toStatus(err)
	}
	nreq := proto.Clone(req).(*streamv1.LogsRequest)
	nreq.Pod = t.ref
	ns, err := t.conn.Logs(stream.Context(), nreq)
	if err != nil {
		return relayErr(err)
	}
	// Chunks pass as the node encoded them: each is received as its wire
	// bytes and sent on in the same buffers (no decode, no encode, no
	// copy here), one at a time, so flow control on the user's side
	// holds the node back.
	for {
		m := new(codec.Raw)
		if err := ns.RecvMsg(m); err != nil {
			return relayErr(err)
		}
		if err := stream.SendMsg(m); err != nil {
			m.Free() // a no-op once gRPC took the buffers
			return err
		}
	}
}

// Exec implements PodStreams.
func (p *podStreams) Exec(stream streamv1.PodStreams_ExecServer) error {
	return p.execLike(stream, SubresourceExec, func(ctx context.Context, c streamv1.NodeStreamsClient) (bidi[*streamv1.ExecInput, *streamv1.ExecOutput], error) {
		return c.Exec(ctx)
	})
}

// Attach implements PodStreams.
func (p *podStreams) Attach(stream streamv1.PodStreams_AttachServer) error {
	return p.execLike(stream, SubresourceAttach, func(ctx context.Context, c streamv1.NodeStreamsClient) (bidi[*streamv1.ExecInput, *streamv1.ExecOutput], error) {
		return c.Attach(ctx)
	})
}

// bidi is a node-side client stream.
type bidi[In, Out any] interface {
	Send(In) error
	Recv() (Out, error)
	CloseSend() error
}

// userStream is a user-side server stream.
type userStream[In, Out any] interface {
	Send(Out) error
	Recv() (In, error)
	Context() context.Context
}

func (p *podStreams) execLike(stream streamv1.PodStreams_ExecServer, sub string,
	dial func(context.Context, streamv1.NodeStreamsClient) (bidi[*streamv1.ExecInput, *streamv1.ExecOutput], error)) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return toStatus(fmt.Errorf("%w: the first message must be start", ErrInvalid))
	}
	rec := StreamAudit{Subresource: sub, Namespace: start.GetPod().GetNamespace(), Pod: start.GetPod().GetName(),
		Container: start.GetPod().GetContainer(), Command: start.GetCommand()}
	t, err := p.open(stream.Context(), "create", sub, start.GetPod())
	if t != nil {
		rec.Namespace, rec.Node = t.ref.GetNamespace(), t.node
	}
	rec.Err = toStatus(err)
	p.audit(stream.Context(), rec)
	if err != nil {
		return toStatus(err)
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	ns, err := dial(ctx, t.conn)
	if err != nil {
		return relayErr(err)
	}
	nstart := proto.Clone(start).(*streamv1.ExecStart)
	nstart.Pod = t.ref
	if err := ns.Send(&streamv1.ExecInput{Input: &streamv1.ExecInput_Start{Start: nstart}}); err != nil {
		return sendFailed(err, ns.Recv)
	}
	return relay[*streamv1.ExecInput, *streamv1.ExecOutput](cancel, stream, ns)
}

// relay copies user → node in a goroutine and node → user here, until
// the node's side ends. The user half-closing half-closes the node's side.
func relay[In, Out any](cancel context.CancelFunc, user userStream[In, Out], node bidi[In, Out]) error {
	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		for {
			m, err := user.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					_ = node.CloseSend()
				} else {
					cancel() // the user went away: end the node's stream too
				}
				return
			}
			if err := node.Send(m); err != nil {
				return // the node's side ended; its Recv below says why
			}
		}
	}()
	var err error
	for {
		var m Out
		if m, err = node.Recv(); err != nil {
			break
		}
		if err = user.Send(m); err != nil {
			break
		}
	}
	cancel()
	// The upward copy ends now: its node.Send fails on the cancelled
	// stream, and its user.Recv once this handler returns. Not waited for
	// here, since that Recv returns only after.
	return relayErr(err)
}

// PortForward implements PodStreams.
func (p *podStreams) PortForward(stream streamv1.PodStreams_PortForwardServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return toStatus(fmt.Errorf("%w: the first frame must be start", ErrInvalid))
	}
	if start.GetPort() < 1 || start.GetPort() > 65535 {
		return toStatus(fmt.Errorf("%w: port %d: want 1-65535", ErrInvalid, start.GetPort()))
	}
	rec := StreamAudit{Subresource: SubresourcePortForward, Namespace: start.GetPod().GetNamespace(), Pod: start.GetPod().GetName(), Port: start.GetPort()}
	t, err := p.open(stream.Context(), "create", SubresourcePortForward, start.GetPod())
	if t != nil {
		rec.Namespace, rec.Node = t.ref.GetNamespace(), t.node
	}
	rec.Err = toStatus(err)
	p.audit(stream.Context(), rec)
	if err != nil {
		return toStatus(err)
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	ns, err := t.conn.PortForward(ctx)
	if err != nil {
		return relayErr(err)
	}
	nstart := proto.Clone(start).(*streamv1.PortForwardStart)
	nstart.Pod = t.ref
	if err := ns.Send(&streamv1.PortForwardFrame{Frame: &streamv1.PortForwardFrame_Start{Start: nstart}}); err != nil {
		return sendFailed(err, ns.Recv)
	}
	return relay[*streamv1.PortForwardFrame, *streamv1.PortForwardFrame](cancel, stream, ns)
}
