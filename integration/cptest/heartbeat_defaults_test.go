package cptest_test

import (
	"testing"

	"github.com/skiffhq/skiff/agent"
	"github.com/skiffhq/skiff/controlplane/controllers/nodelifecycle"
)

// (Here because agent/ may not import controlplane/.) A live node must not go Unknown between two heartbeats: the controller's
// grace covers several of the agent's intervals (it was 4 s against a 5 s
// heartbeat, so every node flapped Ready/Unknown each interval).
func TestGraceCoversSeveralHeartbeats(t *testing.T) {
	hb, grace := agent.DefaultConfig().HeartbeatInterval, nodelifecycle.DefaultConfig().GracePeriod
	if grace < 3*hb {
		t.Fatalf("node lifecycle grace %v is less than three agent heartbeats of %v", grace, hb)
	}
}
