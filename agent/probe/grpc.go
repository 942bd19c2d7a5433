package probe

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// GRPCAction calls the standard grpc.health.v1.Health/Check on Port of the
// pod IP; SERVING is success. Like kubelet, the connection is plaintext and
// Service is sent as the request's service name (empty: the server as a
// whole).
type GRPCAction struct {
	Port    int32  `json:"port"`
	Service string `json:"service,omitempty"`
}

// checkGRPC dials from the pod's network namespace through t.Dial, so the
// check sees what the pod's own network sees.
func checkGRPC(ctx context.Context, g *GRPCAction, t Target) Result {
	addr := net.JoinHostPort(t.Host(), strconv.Itoa(int(g.Port)))
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return t.Dial(ctx, "tcp", a) }),
		grpc.WithUserAgent("skiff-probe/1.0"))
	if err != nil {
		return Result{Message: fmt.Sprintf("grpc %s: %v", addr, err)}
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: g.Service})
	if err != nil {
		return Result{Message: fmt.Sprintf("grpc %s service %q: %v", addr, g.Service, err)}
	}
	if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
		return Result{Message: fmt.Sprintf("grpc %s service %q: status %s", addr, g.Service, s)}
	}
	return Result{Success: true}
}
