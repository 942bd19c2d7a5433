package consensus_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/consensus/consensustest"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// The linearizability test drives concurrent clients against every node of
// a 3-node cluster while a nemesis kills and restarts the leader and cuts
// nodes off the network, then checks the recorded history with porcupine.
// Histories are checked per round and per key so they stay short; `make
// soak` runs rounds for SKIFF_SOAK (e.g. 10m).

const (
	opGet = iota
	opPut
	opCAS // conditional put on the mod_revision a preceding get returned
)

type linInput struct {
	kind     int
	key      string
	value    string
	expected string // for opCAS: the value read with the mod_revision
}

type linOutput struct {
	value   string
	ok      bool
	unknown bool // the write may or may not have happened
}

var registerModel = porcupine.NondeterministicModel{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Input.(linInput).key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() []interface{} { return []interface{}{""} },
	Step: func(state, input, output interface{}) []interface{} {
		st, in, out := state.(string), input.(linInput), output.(linOutput)
		switch in.kind {
		case opGet:
			if out.value == st {
				return []interface{}{st}
			}
			return nil
		case opPut:
			if out.unknown {
				return []interface{}{st, in.value}
			}
			return []interface{}{in.value}
		default: // opCAS
			switch {
			case out.unknown && st == in.expected:
				return []interface{}{st, in.value}
			case out.unknown:
				return []interface{}{st}
			case out.ok && st == in.expected:
				return []interface{}{in.value}
			case !out.ok && st != in.expected:
				return []interface{}{st}
			}
			return nil
		}
	},
	Equal: func(a, b interface{}) bool { return a == b },
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(linInput), output.(linOutput)
		names := []string{"get", "put", "cas"}
		return fmt.Sprintf("%s(%s, %q, exp %q) -> %q ok=%v unknown=%v", names[in.kind], in.key, in.value, in.expected, out.value, out.ok, out.unknown)
	},
}

type history struct {
	mu    sync.Mutex
	start time.Time
	ops   []porcupine.Operation
}

func (h *history) now() int64 { return time.Since(h.start).Nanoseconds() }

func (h *history) add(client int, in linInput, out linOutput, call, ret int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Output: out, Call: call, Return: ret})
}

func TestLinearizableUnderFaults(t *testing.T) {
	total := 10 * time.Second
	if testing.Short() {
		total = 6 * time.Second
	}
	if s := os.Getenv("SKIFF_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("SKIFF_SOAK=%q: %v", s, err)
		}
		total = d
	}
	c := consensustest.Start(t, 3, nil)
	const roundLen = 3 * time.Second
	deadline := time.Now().Add(total)
	for round := 0; round == 0 || time.Now().Before(deadline); round++ {
		h := runRound(t, c, round, roundLen)
		res, info := porcupine.CheckOperationsVerbose(registerModel.ToModel(), h.ops, time.Minute)
		switch res {
		case porcupine.Ok:
			t.Logf("round %d: %d operations linearizable", round, len(h.ops))
		case porcupine.Illegal:
			f, err := os.CreateTemp("", "skiff-linearizability-*.html")
			if err == nil {
				_ = porcupine.Visualize(registerModel.ToModel(), info, f)
				_ = f.Close()
			}
			t.Fatalf("round %d: history of %d operations is NOT linearizable (visualization: %s)", round, len(h.ops), f.Name())
		default:
			t.Fatalf("round %d: checker gave up (%s) on %d operations", round, res, len(h.ops))
		}
	}
}

// runRound runs clients and the nemesis for d and returns their history.
func runRound(t *testing.T, c *consensustest.Cluster, round int, d time.Duration) *history {
	h := &history{start: time.Now()}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	for client := 0; client < 6; client++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runClient(ctx, c, h, round, client)
		}()
	}
	nemesis(ctx, t, c, round)
	wg.Wait()
	// Heal and restart everything so the next round starts from a whole cluster.
	for _, n := range c.Nodes {
		n.Fault.Heal()
		if n.Store() == nil {
			if err := n.Start(); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.MustLeader(t)
	end := h.now()
	for i := range h.ops {
		if h.ops[i].Output.(linOutput).unknown {
			h.ops[i].Return = end // it may have taken effect any time until now
		}
	}
	return h
}

// nemesis alternates faults: kill the leader and bring it back, then cut a
// random node off the network and heal it.
func nemesis(ctx context.Context, t *testing.T, c *consensustest.Cluster, round int) {
	tick := time.NewTicker(700 * time.Millisecond)
	defer tick.Stop()
	var killed *consensustest.Node
	var cut *consensustest.Node
	for step := 0; ; step++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		switch step % 4 {
		case 0:
			if l, err := c.WaitLeader(time.Second); err == nil {
				killed = l
				killed.Stop()
			}
		case 1:
			if killed != nil {
				if err := killed.Start(); err != nil {
					t.Errorf("restart %s: %v", killed.ID, err)
				}
				killed = nil
			}
		case 2:
			cut = c.Nodes[(round+step)%len(c.Nodes)]
			cut.Fault.Isolate()
		case 3:
			if cut != nil {
				cut.Fault.Heal()
				cut = nil
			}
		}
	}
}

func runClient(ctx context.Context, c *consensustest.Cluster, h *history, round, client int) {
	rng := rand.New(rand.NewPCG(uint64(round), uint64(client)))
	seq := 0
	for ctx.Err() == nil {
		nodes := c.Running()
		if len(nodes) == 0 {
			continue
		}
		s := nodes[rng.IntN(len(nodes))].Store()
		if s == nil {
			continue
		}
		key := fmt.Sprintf("/lin/%d/%d", round, rng.IntN(4))
		seq++
		value := fmt.Sprintf("c%d-%d", client, seq)
		opCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		switch r := rng.IntN(10); {
		case r < 4:
			call := h.now()
			kv, _, err := s.Get(opCtx, []byte(key))
			if err == nil {
				h.add(client, linInput{kind: opGet, key: key}, linOutput{value: valueOf(kv)}, call, h.now())
			}
		case r < 7:
			call := h.now()
			_, err := s.Put(opCtx, &storepb.PutRequest{Key: []byte(key), Value: []byte(value)})
			h.add(client, linInput{kind: opPut, key: key, value: value}, linOutput{ok: err == nil, unknown: err != nil}, call, h.now())
		default:
			call := h.now()
			kv, _, err := s.Get(opCtx, []byte(key))
			if err != nil {
				break
			}
			h.add(client, linInput{kind: opGet, key: key}, linOutput{value: valueOf(kv)}, call, h.now())
			var rev int64
			if kv != nil {
				rev = kv.ModRevision
			}
			call = h.now()
			_, err = s.Put(opCtx, &storepb.PutRequest{Key: []byte(key), Value: []byte(value), IfModRevision: proto.Int64(rev)})
			out := linOutput{ok: err == nil}
			if err != nil && !errors.Is(err, consensus.ErrConflict) {
				out.unknown = true
			}
			h.add(client, linInput{kind: opCAS, key: key, value: value, expected: valueOf(kv)}, out, call, h.now())
		}
		cancel()
	}
}

func valueOf(kv *storepb.KeyValue) string {
	if kv == nil {
		return ""
	}
	return string(kv.Value)
}
