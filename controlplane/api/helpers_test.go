package api_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/integration/api/apitest"
)

func proto_clone[T proto.Message](m T) T { return proto.Clone(m).(T) }

// startReadyTuned starts one node that keeps only 10 watch events.
func startReadyTuned(t *testing.T) *apitest.Cluster {
	t.Helper()
	c, err := apitest.NewCluster(apitest.Options{Nodes: 1, BaseDir: t.TempDir(), Tune: func(cfg *consensus.Config) { cfg.WatchHistory = 10 }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.WaitReady(ctxT(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	return c
}
