package streams

import (
	"errors"
	"io"
	"net"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	streamv1 "github.com/skiffhq/skiff/proto/stream/v1"
)

// PortForward implements NodeStreams: one TCP connection to the pod's
// port, its bytes both ways in data frames. The caller half-closing its
// side half-closes the connection; the pod's side ending ends the call.
func (s *Server) PortForward(stream streamv1.NodeStreams_PortForwardServer) error {
	in, err := stream.Recv()
	if err != nil {
		return err
	}
	start := in.GetStart()
	if start == nil {
		return status.Error(codes.InvalidArgument, "the first frame must be start")
	}
	if start.GetPort() < 1 || start.GetPort() > 65535 {
		return status.Errorf(codes.InvalidArgument, "port %d: want 1-65535", start.GetPort())
	}
	ref := start.GetPod()
	if ref.GetUid() == "" {
		return status.Error(codes.InvalidArgument, "pod.uid: required (the API server sets it)")
	}
	if _, _, err := s.resolve(&streamv1.PodRef{Namespace: ref.GetNamespace(), Name: ref.GetName(), Uid: ref.GetUid(), Container: firstContainerOf(s, ref)}); err != nil {
		return err
	}
	conn, err := s.cfg.Runtime.DialPort(stream.Context(), ref.GetUid(), int(start.GetPort()))
	if err != nil {
		return status.Errorf(codes.Unavailable, "pod %s/%s port %d: %v", ref.GetNamespace(), ref.GetName(), start.GetPort(), err)
	}
	defer conn.Close()
	go func() { // caller → pod; ends when the call or the connection does
		for {
			f, err := stream.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					if tc, ok := conn.(*net.TCPConn); ok {
						_ = tc.CloseWrite()
						return
					}
				}
				_ = conn.Close()
				return
			}
			if _, err := conn.Write(f.GetData()); err != nil {
				_ = conn.Close()
				return
			}
		}
	}()
	buf := make([]byte, ChunkSize)
	for { // pod → caller
		n, err := conn.Read(buf)
		if n > 0 {
			if serr := stream.Send(&streamv1.PortForwardFrame{Frame: &streamv1.PortForwardFrame_Data{Data: buf[:n]}}); serr != nil {
				return serr
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return status.Errorf(codes.Unavailable, "pod %s/%s port %d: %v", ref.GetNamespace(), ref.GetName(), start.GetPort(), err)
		}
	}
}

// firstContainerOf lets resolve check a port-forward's pod, which names
// no container: any of the pod's containers will do.
func firstContainerOf(s *Server, ref *streamv1.PodRef) string {
	id, err := s.cfg.Runtime.PodIdentity(ref.GetUid())
	if err != nil || len(id.Containers) == 0 {
		return ""
	}
	return id.Containers[0]
}
