package consensus

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/skiffhq/skiff/proto/codec"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// similarPuts is a batch like the ReplicaSet controller's: n objects from
// one template that differ in their names.
func similarPuts(n int) *storepb.BatchRequest {
	b := &storepb.BatchRequest{}
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("/registry/pods/bench/web-7d4b9c-%05d", i)
		val := fmt.Sprintf(`{"metadata":{"name":"web-7d4b9c-%05d","namespace":"bench","labels":{"app":"web","pod-template-hash":"7d4b9c"}},`+
			`"spec":{"containers":[{"name":"app","image":"registry.local/web:1.25","resources":{"requests":{"cpu":"100m","memory":"64Mi"}}}]}}`, i)
		b.Txns = append(b.Txns, &storepb.TxnRequest{
			Compare: []*storepb.Compare{{Key: []byte(key), Target: storepb.Compare_MOD_REVISION, Result: storepb.Compare_EQUAL}},
			Success: []*storepb.RequestOp{{Op: &storepb.RequestOp_Put{Put: &storepb.PutRequest{Key: []byte(key), Value: []byte(val)}}}},
		})
	}
	return b
}

func decodeEnvelope(t *testing.T, data []byte) *storepb.Command {
	t.Helper()
	var cmd storepb.Command
	if err := codec.Unmarshal(data, &cmd); err != nil {
		t.Fatal(err)
	}
	return &cmd
}

// A batch of similar objects goes into the log compressed, several times
// smaller, and applies to the same state as the same batch stored raw.
func TestSimilarBatchIsCompressedAndAppliesAsRaw(t *testing.T) {
	batch := similarPuts(200)
	data := mustCommand(t, storepb.Command_BATCH, batch)
	cmd := decodeEnvelope(t, data)
	raw, err := codec.Marshal(batch)
	if err != nil {
		t.Fatal(err)
	}
	if cmd.Encoding != storepb.Command_S2 {
		t.Fatalf("a %d-byte batch of similar pods was stored %v", len(raw), cmd.Encoding)
	}
	if ratio := float64(len(raw)) / float64(len(cmd.Payload)); ratio < 4 {
		t.Errorf("compressed %d → %d bytes (%.1f×), want at least 4× for objects from one template", len(raw), len(cmd.Payload), ratio)
	}
	t.Logf("batch of 200 similar puts: %d → %d bytes", len(raw), len(cmd.Payload))

	compressed, plain := newFeeder(t), newFeeder(t)
	mustOK(t, compressed.raw(data))
	mustOK(t, plain.raw(mustMarshal(t, &storepb.Command{Version: CommandVersion, Type: storepb.Command_BATCH, Payload: raw})))
	if a, b := snapshotBytes(t, compressed.f), snapshotBytes(t, plain.f); !bytes.Equal(a, b) {
		t.Fatal("the compressed batch left another state than the raw one")
	}
	checkIndex(t, compressed.f)
}

// Small payloads and payloads that do not shrink are stored as they are.
func TestSmallOrIncompressiblePayloadsStayRaw(t *testing.T) {
	small := mustCommand(t, storepb.Command_PUT, &storepb.PutRequest{Key: []byte("/registry/leases/kube-node-lease/n1"), Value: bytes.Repeat([]byte("a"), 512)})
	if enc := decodeEnvelope(t, small).Encoding; enc != storepb.Command_RAW {
		t.Errorf("a small put was stored %v", enc)
	}
	noise := make([]byte, 64<<10)
	if _, err := rand.Read(noise); err != nil {
		t.Fatal(err)
	}
	data := mustCommand(t, storepb.Command_PUT, &storepb.PutRequest{Key: []byte("/random"), Value: noise})
	if enc := decodeEnvelope(t, data).Encoding; enc != storepb.Command_RAW {
		t.Errorf("random bytes were stored %v", enc)
	}
	l := newFeeder(t)
	mustOK(t, l.raw(data))
	if got := l.f.get([]byte("/random")).GetValue(); !bytes.Equal(got, noise) {
		t.Error("the raw value did not round-trip")
	}
}
