package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/controlplane/pki"
	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// Store keys owned by this package (outside /registry/, so the API never
// serves them).
const (
	tokensPrefix       = "/skiff/tokens/"
	controlNodesPrefix = "/skiff/controlnodes/"
	gossipKeyKey       = "/skiff/gossip-key"
)

// kv is the part of consensus.Store these adapters use.
type kv interface {
	Get(ctx context.Context, key []byte) (*storepb.KeyValue, int64, error)
	Put(ctx context.Context, req *storepb.PutRequest) (*storepb.PutResponse, error)
	Delete(ctx context.Context, req *storepb.DeleteRequest) (*storepb.DeleteResponse, error)
	Range(ctx context.Context, req *storepb.RangeRequest) (*storepb.RangeResponse, error)
}

// tokenStore is pki.TokenStore over the replicated store: one JSON
// pki.TokenRecord per /skiff/tokens/<id>.
type tokenStore struct{ kv kv }

var _ pki.TokenStore = tokenStore{}

func (t tokenStore) Get(ctx context.Context, id string) (pki.TokenRecord, bool, error) {
	kv, _, err := t.kv.Get(ctx, []byte(tokensPrefix+id))
	if err != nil {
		return pki.TokenRecord{}, false, fmt.Errorf("read token %s: %w", id, err)
	}
	if kv == nil {
		return pki.TokenRecord{}, false, nil
	}
	var rec pki.TokenRecord
	if err := json.Unmarshal(kv.Value, &rec); err != nil {
		return pki.TokenRecord{}, false, fmt.Errorf("token record %s: %w", id, err)
	}
	return rec, true, nil
}

func (t tokenStore) Put(ctx context.Context, rec pki.TokenRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	_, err = t.kv.Put(ctx, &storepb.PutRequest{Key: []byte(tokensPrefix + rec.ID), Value: b})
	return err
}

func (t tokenStore) Delete(ctx context.Context, id string) error {
	_, err := t.kv.Delete(ctx, &storepb.DeleteRequest{Key: []byte(tokensPrefix + id)})
	if errors.Is(err, consensus.ErrKeyNotFound) {
		return nil
	}
	return err
}

func (t tokenStore) List(ctx context.Context) ([]pki.TokenRecord, error) {
	kvs, err := rangePrefix(ctx, t.kv, tokensPrefix)
	if err != nil {
		return nil, err
	}
	out := make([]pki.TokenRecord, 0, len(kvs))
	for _, kv := range kvs {
		var rec pki.TokenRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			return nil, fmt.Errorf("token record %s: %w", kv.Key, err)
		}
		out = append(out, rec)
	}
	return out, nil
}

// rangePrefix reads every key under prefix (linearizable), page by page.
func rangePrefix(ctx context.Context, s kv, prefix string) ([]*storepb.KeyValue, error) {
	var out []*storepb.KeyValue
	var after []byte
	for {
		resp, err := s.Range(ctx, &storepb.RangeRequest{Key: []byte(prefix), Prefix: true, Limit: 500, ContinueAfter: after})
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", prefix, err)
		}
		out = append(out, resp.Kvs...)
		if !resp.More || len(resp.NextKey) == 0 {
			return out, nil
		}
		after = resp.NextKey
	}
}

// controlRecord is a control node's entry in /skiff/controlnodes/<id>.
type controlRecord struct {
	ID          string `json:"id"`
	APIAddress  string `json:"apiAddress"`
	RaftAddress string `json:"raftAddress"`
}

// registerControl writes this node's record if it is missing or stale.
func registerControl(ctx context.Context, s kv, rec controlRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	key := []byte(controlNodesPrefix + rec.ID)
	cur, _, err := s.Get(ctx, key)
	if err != nil {
		return err
	}
	if cur != nil && bytes.Equal(cur.Value, b) {
		return nil
	}
	_, err = s.Put(ctx, &storepb.PutRequest{Key: key, Value: b})
	return err
}

// controlRecords returns the records of current store members by id.
func controlRecords(ctx context.Context, s *consensus.Store) (map[string]controlRecord, []*storepb.Member, error) {
	members, err := s.Members(ctx)
	if err != nil {
		return nil, nil, err
	}
	kvs, err := rangePrefix(ctx, s, controlNodesPrefix)
	if err != nil {
		return nil, nil, err
	}
	byID := map[string]controlRecord{}
	for _, kv := range kvs {
		var r controlRecord
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			continue // a record from a newer version: ignore rather than fail joins
		}
		byID[r.ID] = r
	}
	out := map[string]controlRecord{}
	for _, m := range members {
		// A record counts only if it describes this member at this address:
		// after a restore or recovery, records of another cluster's nodes
		// with the same name must not be handed out.
		if r, ok := byID[m.Id]; ok && r.RaftAddress == m.Address {
			out[m.Id] = r
		}
	}
	return out, members, nil
}

// apiAddresses lists the API addresses of the current control nodes.
func apiAddresses(ctx context.Context, s *consensus.Store) ([]string, error) {
	recs, _, err := controlRecords(ctx, s)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.APIAddress)
	}
	sort.Strings(out)
	return out, nil
}

// gossipKey returns the cluster's memberlist key, creating it once.
func gossipKey(ctx context.Context, s kv) ([]byte, error) {
	cur, _, err := s.Get(ctx, []byte(gossipKeyKey))
	if err != nil {
		return nil, err
	}
	if cur != nil {
		return cur.Value, nil
	}
	key := make([]byte, 32) // AES-256 for memberlist
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	// Create only if still absent: two nodes racing keep one key.
	absent := int64(0)
	if _, err := s.Put(ctx, &storepb.PutRequest{Key: []byte(gossipKeyKey), Value: key, IfModRevision: &absent}); err != nil && !errors.Is(err, consensus.ErrConflict) {
		return nil, err
	}
	cur, _, err = s.Get(ctx, []byte(gossipKeyKey))
	if err != nil || cur == nil {
		return nil, fmt.Errorf("read gossip key: %v", err)
	}
	return cur.Value, nil
}

// storeMembers is pki.ControlMembers over the store.
type storeMembers struct{ s *consensus.Store }

func (m storeMembers) AddControlNode(ctx context.Context, id, raftAddress string) (pki.ControlJoinInfo, error) {
	added, err := m.s.AddMember(ctx, id, raftAddress, false)
	if err != nil {
		return pki.ControlJoinInfo{}, err
	}
	info := pki.ControlJoinInfo{Voter: added.Suffrage == storepb.Member_VOTER}
	members, err := m.s.Members(ctx)
	if err != nil {
		// The joining node needs at least the ids: its store port accepts
		// only these peers until the leader reaches it.
		for _, id := range m.s.MemberIDs() {
			info.Members = append(info.Members, pki.Member{ID: id})
		}
		return info, nil
	}
	for _, mem := range members {
		info.Members = append(info.Members, pki.Member{ID: mem.Id, Address: mem.Address, Voter: mem.Suffrage == storepb.Member_VOTER})
	}
	return info, nil
}
