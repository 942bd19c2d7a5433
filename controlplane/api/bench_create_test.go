package api_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/api/apitest"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// BenchmarkCreateManyPods is the API's share of the scheduler benchmark's
// hot path: pods created 100 per CreateMany (as the ReplicaSet controller
// does) through defaults, admission (a namespace without LimitRanges or
// quotas, as in the benchmark) and the conditional write, on one node,
// client included. allocs/op is per batch of 100.
func BenchmarkCreateManyPods(b *testing.B) {
	c := startBench(b)
	cl := c.MustClient(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := client.Create(ctx, cl, ns("bench")); err != nil {
		b.Fatal(err)
	}
	const batch = 100
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pods := make([]*apiv1.Pod, batch)
		for j := range pods {
			pods[j] = pod("bench", fmt.Sprintf("p-%d-%d", i, j), map[string]string{"app": "bench"})
		}
		_, errs, err := client.CreateMany(ctx, cl, pods)
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range errs {
			if e != nil {
				b.Fatal(e)
			}
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "pods/s")
}

func startBench(b *testing.B) *apitest.Cluster {
	b.Helper()
	c := apitest.Start(b, 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	return c
}
