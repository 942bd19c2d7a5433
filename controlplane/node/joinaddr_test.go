package node

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestJoinAddressWithoutPortDialsAPIPort: `ctl join … 127.0.0.1` dials the
// API port 7443 (not gRPC's default 443). The test listens on 7443 itself
// and sees the join's connection arrive there.
func TestJoinAddressWithoutPortDialsAPIPort(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(DefaultAPIPort))
	if err != nil {
		t.Fatalf("this test needs 127.0.0.1:7443 free (it plays the control node there): %v", err)
	}
	defer lis.Close()
	dialed := make(chan struct{}, 1)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			select {
			case dialed <- struct{}{}:
			default:
			}
			c.Close() // no TLS here: the join fails, after dialing the right port
		}
	}()
	cfg, _ := testConfig(t, t.TempDir(), "w1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tok := "skiff1." + strings.Repeat("ab", 32) + ".abc123." + strings.Repeat("a", 26)
	errc := make(chan error, 1)
	go func() { errc <- Join(ctx, cfg, JoinOptions{Address: "127.0.0.1", Token: tok}) }()
	select {
	case <-dialed:
	case err := <-errc:
		t.Fatalf("join ended without dialing 127.0.0.1:7443: %v", err)
	case <-ctx.Done():
		t.Fatal("join never dialed 127.0.0.1:7443")
	}
	cancel()
	<-errc
}

// TestJoinErrorSaysWhatToDo: a name the cluster already has (the join
// service answers AlreadyExists) gets an error that says to pass --name;
// an unreachable control node is named with its address.
func TestJoinErrorSaysWhatToDo(t *testing.T) {
	err := joinError("10.0.0.1:7443", "web-1", status.Error(codes.AlreadyExists, `node "web-1" is registered and alive`))
	if !errors.Is(err, ErrNodeNameTaken) || !strings.Contains(err.Error(), "pass --name") || !strings.Contains(err.Error(), `"web-1"`) {
		t.Errorf("name taken: %v; want ErrNodeNameTaken saying to pass --name", err)
	}
	err = joinError("10.0.0.1:7443", "web-1", status.Error(codes.Unavailable, "connection refused"))
	if errors.Is(err, ErrNodeNameTaken) || !strings.Contains(err.Error(), "cannot reach the control node at 10.0.0.1:7443") {
		t.Errorf("unreachable: %v", err)
	}
	other := status.Error(codes.Unauthenticated, "token expired")
	if err := joinError("10.0.0.1:7443", "web-1", other); err != other {
		t.Errorf("other errors pass unchanged: got %v", err)
	}
}
