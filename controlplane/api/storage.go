package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/codec"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// stored is an object read from the store with the revision it was written at.
type stored struct {
	obj kinds.Object
	rev int64 // the key's mod_revision: the object's resourceVersion
}

// encode is the stored form: protobuf with resourceVersion cleared (it is
// the key's mod_revision, known only after the write). Map entries are in
// Go's map order: nothing compares stored bytes (proto.Equal decides
// "unchanged").
func encode(obj kinds.Object) ([]byte, error) {
	md := kinds.Meta(obj)
	rv := md.ResourceVersion
	md.ResourceVersion = ""
	b, err := codec.Marshal(obj)
	md.ResourceVersion = rv
	if err != nil {
		return nil, fmt.Errorf("encode %s %q: %w", obj.GetKind(), md.Name, err)
	}
	return b, nil
}

// decode reads a stored value into a new object of kind k. Stored values
// never change, so the object's strings alias kv.Value.
func decode(k *kinds.Kind, kv *storepb.KeyValue) (kinds.Object, error) {
	obj := k.New()
	if err := codec.UnmarshalAliasing(kv.Value, obj); err != nil {
		return nil, fmt.Errorf("decode %s at %q: %w", k.Name, kv.Key, err)
	}
	kinds.SetTypeMeta(obj, k.APIVersion(), k.Name)
	kinds.Meta(obj).ResourceVersion = formatRev(kv.ModRevision)
	return obj, nil
}

// rawEnvelope wraps a stored value in the envelope without decoding it:
// the resourceVersion is appended as a second metadata field, which
// protobuf parsers merge into the first. Watch fan-out and large Lists
// then cost a copy per object instead of a decode and an encode.
func rawEnvelope(k *kinds.Kind, value []byte, rev int64) *apiv1.Object {
	var meta []byte
	meta = protowire.AppendTag(meta, metaResourceVersionField, protowire.BytesType)
	meta = protowire.AppendString(meta, formatRev(rev))
	b := make([]byte, 0, len(value)+len(meta)+8)
	b = append(b, value...)
	b = protowire.AppendTag(b, kindMetadataField, protowire.BytesType)
	b = protowire.AppendBytes(b, meta)
	return &apiv1.Object{Kind: k.Name, Object: &anypb.Any{TypeUrl: typeURL(k), Value: b}}
}

// Field numbers the raw envelope relies on; checkRawLayout verifies them
// against every registered kind at start.
const (
	kindMetadataField        protowire.Number = 3
	metaResourceVersionField protowire.Number = 5
)

func checkRawLayout(reg *kinds.Registry) error {
	rv := (&apiv1.ObjectMeta{}).ProtoReflect().Descriptor().Fields().ByName("resourceVersion")
	if rv == nil || rv.Number() != metaResourceVersionField {
		return fmt.Errorf("ObjectMeta.resourceVersion is not field %d", metaResourceVersionField)
	}
	for _, k := range reg.Kinds() {
		f := k.New().ProtoReflect().Descriptor().Fields().ByName("metadata")
		if f == nil || f.Number() != kindMetadataField {
			return fmt.Errorf("kind %s: metadata is not field %d", k.Name, kindMetadataField)
		}
	}
	return nil
}

func typeURL(k *kinds.Kind) string { return "type.googleapis.com/" + string(k.MessageName()) }

func (s *Server) pack(obj kinds.Object) (*apiv1.Object, error) {
	env, err := s.reg.Pack(obj)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return env, nil
}

func formatRev(r int64) string { return strconv.FormatInt(r, 10) }

func parseRev(field, s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	r, err := strconv.ParseInt(s, 10, 64)
	if err != nil || r < 0 {
		return 0, fmt.Errorf("%w: %s: %q is not a resourceVersion (a non-negative integer)", ErrInvalid, field, s)
	}
	return r, nil
}

func newUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

const randomSuffixChars = "bcdfghjklmnpqrstvwxz2456789"

func randomSuffix(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = randomSuffixChars[int(b[i])%len(randomSuffixChars)]
	}
	return string(b)
}

func (s *Server) timestamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// get reads one object; nil when absent. stale reads this node's state.
func (s *Server) get(ctx context.Context, k *kinds.Kind, ns, name string, stale bool) (*stored, error) {
	resp, err := s.store.Range(ctx, &storepb.RangeRequest{Key: []byte(k.Key(ns, name)), Stale: stale})
	if err != nil {
		return nil, fmt.Errorf("read %s %s/%s: %w", k.Name, ns, name, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	obj, err := decode(k, resp.Kvs[0])
	if err != nil {
		return nil, err
	}
	return &stored{obj: obj, rev: resp.Kvs[0].ModRevision}, nil
}

// mustGet is get that fails with ErrNotFound.
func (s *Server) mustGet(ctx context.Context, k *kinds.Kind, ns, name string) (*stored, error) {
	st, err := s.get(ctx, k, ns, name, false)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return nil, notFound(k, ns, name)
	}
	return st, nil
}

func notFound(k *kinds.Kind, ns, name string) error {
	if k.Namespaced && ns != "" {
		return fmt.Errorf("%w: %s %q not found in namespace %q", ErrNotFound, k.Resource(), name, ns)
	}
	return fmt.Errorf("%w: %s %q not found", ErrNotFound, k.Resource(), name)
}

// listAll reads every object under a prefix (all pages), linearizably
// unless stale, and returns them with the revision of the first page.
func (s *Server) listAll(ctx context.Context, k *kinds.Kind, ns string, stale bool) ([]*stored, int64, error) {
	return s.listMatching(ctx, k, ns, stale, nil)
}

// listMatching is listAll that decodes only the values keep accepts (all
// when keep is nil): a cheap test on the encoded bytes spares decoding
// every object of a large kind to find a few.
func (s *Server) listMatching(ctx context.Context, k *kinds.Kind, ns string, stale bool, keep func(value []byte) bool) ([]*stored, int64, error) {
	var out []*stored
	rev, err := s.scan(ctx, k, ns, stale, func(kv *storepb.KeyValue) error {
		if keep != nil && !keep(kv.Value) {
			return nil
		}
		obj, err := decode(k, kv)
		if err != nil {
			return err
		}
		out = append(out, &stored{obj: obj, rev: kv.ModRevision})
		return nil
	})
	return out, rev, err
}

// scan calls fn for every stored value of kind k in ns (all pages), read
// linearizably unless stale, and returns the revision of the first page.
func (s *Server) scan(ctx context.Context, k *kinds.Kind, ns string, stale bool, fn func(*storepb.KeyValue) error) (int64, error) {
	var rev int64
	var after []byte
	for {
		resp, err := s.store.Range(ctx, &storepb.RangeRequest{Key: []byte(k.Prefix(ns)), Prefix: true,
			Limit: 1000, ContinueAfter: after, Stale: stale || after != nil})
		if err != nil {
			return 0, fmt.Errorf("list %s in %q: %w", k.Resource(), ns, err)
		}
		if rev == 0 {
			rev = resp.Revision
		}
		for _, kv := range resp.Kvs {
			if err := fn(kv); err != nil {
				return 0, err
			}
		}
		if !resp.More {
			return rev, nil
		}
		after = resp.NextKey
	}
}

// decodeMeta decodes only the metadata of a stored object: the sweep needs
// uids, owners and deletion marks of every object, and decoding whole pods
// for that cost seconds of CPU per sweep at 50,000 pods.
func decodeMeta(k *kinds.Kind, kv *storepb.KeyValue) (*apiv1.ObjectMeta, error) {
	md := &apiv1.ObjectMeta{}
	b := kv.Value
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("decode %s metadata at %q: %w", k.Name, kv.Key, protowire.ParseError(n))
		}
		b = b[n:]
		if num == kindMetadataField && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return nil, fmt.Errorf("decode %s metadata at %q: %w", k.Name, kv.Key, protowire.ParseError(m))
			}
			// Repeated occurrences merge, as protobuf parsers do (and
			// the generated decoder does: it never resets md).
			if err := codec.UnmarshalAliasing(v, md); err != nil {
				return nil, fmt.Errorf("decode %s metadata at %q: %w", k.Name, kv.Key, err)
			}
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return nil, fmt.Errorf("decode %s at %q: %w", k.Name, kv.Key, protowire.ParseError(m))
		}
		b = b[m:]
	}
	md.ResourceVersion = formatRev(kv.ModRevision)
	return md, nil
}

// txnBuilder collects the compares and writes of one atomic store txn.
type txnBuilder struct {
	compares []*storepb.Compare
	ops      []*storepb.RequestOp
	// objectKey is the key whose compare failing means a conflict on the
	// object itself (as opposed to a quota or namespace that moved).
	objectKey string
}

func (t *txnBuilder) expect(key string, modRev int64) {
	t.compares = append(t.compares, &storepb.Compare{Key: []byte(key), Target: storepb.Compare_MOD_REVISION,
		Result: storepb.Compare_EQUAL, Number: modRev})
}

func (t *txnBuilder) put(key string, value []byte) {
	t.ops = append(t.ops, &storepb.RequestOp{Op: &storepb.RequestOp_Put{Put: &storepb.PutRequest{Key: []byte(key), Value: value}}})
}

func (t *txnBuilder) del(key string) {
	t.ops = append(t.ops, &storepb.RequestOp{Op: &storepb.RequestOp_Delete{Delete: &storepb.DeleteRequest{Key: []byte(key)}}})
}

// errRetry: a compare other than the object's failed (a quota, limit range
// or namespace changed between read and write); redo the whole request.
var errRetry = fmt.Errorf("admission state changed, retry")

// commit runs the txn. It returns the revision written, ErrConflict when the
// object's own compare failed, errRetry when another compare failed.
func (s *Server) commit(ctx context.Context, t *txnBuilder) (int64, error) {
	req := &storepb.TxnRequest{Compare: t.compares, Success: t.ops}
	if t.objectKey != "" {
		req.Failure = []*storepb.RequestOp{{Op: &storepb.RequestOp_Range{Range: &storepb.RangeRequest{Key: []byte(t.objectKey), KeysOnly: true}}}}
	}
	resp, err := s.writes.Txn(ctx, req)
	if err != nil {
		if errors.Is(err, consensus.ErrIndeterminate) {
			if rev, ok := s.settle(ctx, t); ok {
				return rev, nil
			}
		}
		return 0, fmt.Errorf("write: %w", err)
	}
	if resp.Succeeded {
		return resp.Revision, nil
	}
	// Which compare failed? The failure branch read the object's key.
	if t.objectKey != "" {
		var have int64
		if r := resp.Responses[0].GetRange(); r != nil && len(r.Kvs) > 0 {
			have = r.Kvs[0].ModRevision
		}
		for _, c := range t.compares {
			if string(c.Key) == t.objectKey && c.Number != have {
				return 0, &conflict{key: t.objectKey, expected: c.Number, have: have}
			}
		}
	}
	return 0, errRetry
}

// settleWindow bounds how long settle waits for a leader to read from.
const settleWindow = 10 * time.Second

// settle decides a write the store could not (leadership moved while it
// was in flight: it may have committed or not) by reading its object back
// once a leader serves linearizable reads again — after a new leader's
// first commit, an entry of the old term is either in the log for good or
// gone for good. The object holding exactly the bytes this write put (a
// create's bytes carry its fresh uid) means it committed, with the whole
// transaction: its revision is returned. Anything else leaves the outcome
// to the caller as before (ok false). Without this, a leader change during
// `ctl apply` or a controller's write answered "write outcome unknown".
func (s *Server) settle(ctx context.Context, t *txnBuilder) (int64, bool) {
	var want []byte
	for _, op := range t.ops {
		if p := op.GetPut(); p != nil && string(p.GetKey()) == t.objectKey {
			want = p.GetValue()
		}
	}
	if t.objectKey == "" || want == nil {
		return 0, false
	}
	ctx, cancel := context.WithTimeout(ctx, settleWindow)
	defer cancel()
	for {
		resp, err := s.store.Range(ctx, &storepb.RangeRequest{Key: []byte(t.objectKey)})
		if err == nil {
			if len(resp.Kvs) == 1 && bytes.Equal(resp.Kvs[0].Value, want) {
				return resp.Kvs[0].ModRevision, true
			}
			return 0, false
		}
		select {
		case <-ctx.Done():
			return 0, false
		case <-time.After(50 * time.Millisecond): // no leader yet
		}
	}
}

// conflict is the object's own compare failing.
type conflict struct {
	key            string
	expected, have int64
}

func (c *conflict) Error() string {
	return fmt.Sprintf("%s: object was modified (resourceVersion %d, expected %d)", c.key, c.have, c.expected)
}
func (c *conflict) Unwrap() error { return ErrConflict }

// maxAdmissionRetries bounds redoing a request whose admission inputs moved.
const maxAdmissionRetries = 20
