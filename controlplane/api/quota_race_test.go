package api_test

import (
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// TestQuotaOfOneAdmitsOneOfTwentyConcurrentCreates creates a quota of one
// pod and, as the very next writes, 20 pods at once through three control
// nodes. The quota's used count is written in the transaction of the
// create it admits, conditional on the quota's revision, so exactly one
// pod gets in, the others are refused over the quota, and used says 1.
func TestQuotaOfOneAdmitsOneOfTwentyConcurrentCreates(t *testing.T) {
	c := startReady(t, 3)
	ctx := ctxT(t, 2*time.Minute)
	var clients []*client.Client
	for _, addr := range c.Addrs() {
		clients = append(clients, c.MustClient(t, addr))
	}
	for round, nsName := range []string{"race-a", "race-b"} {
		mustCreate(t, clients[0], ns(nsName))
		mustCreate(t, clients[round%len(clients)], &apiv1.ResourceQuota{Metadata: &apiv1.ObjectMeta{Namespace: nsName, Name: "one"},
			Spec: &apiv1.ResourceQuotaSpec{Hard: map[string]string{"pods": "1"}}})

		const creates = 20
		errs := make([]error, creates)
		var wg sync.WaitGroup
		for i := range creates {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = client.Create(ctx, clients[i%len(clients)], pod(nsName, "p"+string(rune('a'+i)), nil))
			}()
		}
		wg.Wait()
		admitted := 0
		for i, err := range errs {
			switch {
			case err == nil:
				admitted++
			case status.Code(err) != codes.ResourceExhausted:
				t.Errorf("%s: create %d: want admitted or ResourceExhausted, got %v", nsName, i, err)
			}
		}
		if admitted != 1 {
			t.Fatalf("%s: quota of 1 pod admitted %d of %d concurrent creates", nsName, admitted, creates)
		}
		pods, _, err := client.List[*apiv1.Pod](ctx, clients[0], client.ListOptions{Namespace: nsName})
		if err != nil || len(pods) != 1 {
			t.Fatalf("%s: pods stored: %d (%v), want 1", nsName, len(pods), err)
		}
		q, err := client.Get[*apiv1.ResourceQuota](ctx, clients[0], nsName, "one")
		if err != nil || q.GetStatus().GetUsed()["pods"] != "1" {
			t.Fatalf("%s: quota used %v (%v), want pods=1", nsName, q.GetStatus().GetUsed(), err)
		}
	}
}
