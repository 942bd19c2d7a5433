package client_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/api/apitest"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// BenchmarkClientCallPath: one Get and one compare-and-set Update of a
// ConfigMap through the client's failover path against a one-node cluster
// over loopback mutual TLS.
func BenchmarkClientCallPath(b *testing.B) {
	c, err := apitest.NewCluster(apitest.Options{Nodes: 1, BaseDir: b.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	cl, err := c.Client()
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	cm, err := client.Create(ctx, cl, &apiv1.ConfigMap{Metadata: &apiv1.ObjectMeta{Namespace: "default", Name: "bench"}})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Get", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := client.Get[*apiv1.ConfigMap](ctx, cl, "default", "bench"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Update", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if cm, err = client.Update(ctx, cl, cm); err != nil {
				b.Fatal(err)
			}
		}
	})
}
