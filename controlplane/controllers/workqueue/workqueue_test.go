package workqueue

import (
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/integration/testutil"
)

func TestDeduplicatesWaitingKeys(t *testing.T) {
	q := New(DefaultConfig())
	q.Add("a")
	q.Add("b")
	q.Add("a")
	if q.Len() != 2 {
		t.Fatalf("len %d, want 2", q.Len())
	}
	k, _ := q.Get()
	if k != "a" {
		t.Fatalf("first key %q, want a (FIFO)", k)
	}
}

func TestKeyNeverProcessedTwiceAtOnce(t *testing.T) {
	q := New(DefaultConfig())
	q.Add("a")
	k, _ := q.Get()
	q.Add("a") // changed while processing
	if q.Len() != 0 {
		t.Fatal("a key being processed must not be handed to another worker")
	}
	q.Done(k)
	if q.Len() != 1 {
		t.Fatal("a key added while processing must wait again after Done")
	}
}

func TestRateLimitedBackoffGrowsAndForgetResets(t *testing.T) {
	q := New(Config{BaseDelay: 20 * time.Millisecond, MaxDelay: time.Second})
	start := time.Now()
	q.AddRateLimited("a")
	q.Get()
	q.Done("a")
	first := time.Since(start)
	start = time.Now()
	q.AddRateLimited("a")
	q.Get()
	q.Done("a")
	second := time.Since(start)
	if first < 20*time.Millisecond || second < 40*time.Millisecond {
		t.Fatalf("delays %v, %v: want >= 20ms then >= 40ms", first, second)
	}
	if q.NumRequeues("a") != 2 {
		t.Fatalf("requeues %d, want 2", q.NumRequeues("a"))
	}
	q.Forget("a")
	if q.NumRequeues("a") != 0 {
		t.Fatal("Forget must reset the backoff")
	}
}

func TestAddAfterEarliestWins(t *testing.T) {
	q := New(DefaultConfig())
	q.AddAfter("a", time.Hour)
	q.AddAfter("a", 10*time.Millisecond)
	testutil.WaitFor(t, 2*time.Second, "delayed key", func() bool { return q.Len() == 1 })
}

func TestShutDownWakesGetters(t *testing.T) {
	q := New(DefaultConfig())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, ok := q.Get(); ok {
			t.Error("Get after ShutDown must report !ok")
		}
	}()
	q.ShutDown()
	wg.Wait()
}
