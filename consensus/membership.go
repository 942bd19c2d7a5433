package consensus

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// statusTimeout bounds each member's status poll when listing members.
const statusTimeout = 500 * time.Millisecond

// Members lists the Raft configuration with each member's state, polling
// every member for its applied and commit index and last leader contact.
func (s *Store) Members(ctx context.Context) ([]*storepb.Member, error) {
	f := s.raft.GetConfiguration()
	if err := s.await(f, s.cfg.ApplyTimeout); err != nil {
		return nil, fmt.Errorf("raft configuration: %w", err)
	}
	_, leaderID := s.raft.LeaderWithID()
	servers := f.Configuration().Servers
	out := make([]*storepb.Member, len(servers))
	var wg sync.WaitGroup
	for i, srv := range servers {
		m := &storepb.Member{Id: string(srv.ID), Address: string(srv.Address), Leader: srv.ID == leaderID, LastContactMs: -1}
		if srv.Suffrage != raft.Voter {
			m.Suffrage = storepb.Member_NONVOTER
		}
		out[i] = m
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := s.memberStatus(ctx, string(srv.ID), string(srv.Address))
			if err != nil {
				return
			}
			m.AppliedIndex, m.CommitIndex, m.LastContactMs = st.AppliedIndex, st.CommitIndex, st.LastContactMs
			fresh := m.Leader || (st.LastContactMs >= 0 && time.Duration(st.LastContactMs)*time.Millisecond < s.cfg.HealthyContact)
			// Only a leader observes heartbeats; elsewhere the poll and
			// the member's contact with its leader are the whole truth.
			m.Healthy = fresh && !(s.IsLeader() && s.health.isFailing(m.Id))
		}()
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return out, nil
}

func (s *Store) memberStatus(ctx context.Context, id, addr string) (*storepb.StatusResponse, error) {
	if id == s.cfg.ID {
		return s.localStatus(), nil
	}
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	c, err := s.peers.readyInternal(ctx, addr)
	if err != nil {
		return nil, err
	}
	return c.Status(ctx, &storepb.StatusRequest{})
}

func (s *Store) localStatus() *storepb.StatusResponse {
	st := &storepb.StatusResponse{
		Id:            s.cfg.ID,
		AppliedIndex:  s.fsm.applied.get(),
		CommitIndex:   s.raft.CommitIndex(),
		State:         s.raft.State().String(),
		LastContactMs: -1,
	}
	if s.IsLeader() {
		st.LastContactMs = 0
	} else if lc := s.raft.LastContact(); !lc.IsZero() {
		st.LastContactMs = time.Since(lc).Milliseconds()
	}
	return st
}

// AddMember adds a control node. Under the odd-quorum policy it joins as a
// voter only when that keeps the voter count odd (and within MaxVoters);
// otherwise as a non-voter, promoted later when another node makes an odd
// count possible. On a follower the request is forwarded to the leader.
func (s *Store) AddMember(ctx context.Context, id, addr string, nonvoter bool) (*storepb.Member, error) {
	if id == "" || addr == "" {
		return nil, invalidf("member add: id %q and address %q are both required", id, addr)
	}
	if !s.IsLeader() {
		return forwardCluster(ctx, s, func(c storepb.ClusterClient) (*storepb.Member, error) {
			resp, err := c.MemberAdd(ctx, &storepb.MemberAddRequest{Id: id, Address: addr, Nonvoter: nonvoter})
			if err != nil {
				return nil, err
			}
			return resp.Member, nil
		})
	}
	cf := s.raft.GetConfiguration()
	if err := s.await(cf, s.cfg.ApplyTimeout); err != nil {
		return nil, err
	}
	voters := 0
	for _, srv := range cf.Configuration().Servers {
		if srv.ID == raft.ServerID(id) {
			if srv.Address != raft.ServerAddress(addr) {
				return nil, invalidf("member add: id %q already belongs to %s", id, srv.Address)
			}
			return s.memberByID(ctx, id) // re-joining with the same identity: idempotent
		}
		if srv.Suffrage == raft.Voter {
			voters++
		}
	}
	asVoter := !nonvoter && voters < s.cfg.MaxVoters && (voters+1)%2 == 1
	var f raft.IndexFuture
	if asVoter {
		f = s.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), cf.Index(), s.cfg.ApplyTimeout)
	} else {
		f = s.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), cf.Index(), s.cfg.ApplyTimeout)
	}
	if err := s.await(f, s.cfg.ApplyTimeout); err != nil {
		return nil, fmt.Errorf("member add %s: %w", id, mapRaftErr(err))
	}
	s.log.Info("member added", "id", id, "address", addr, "voter", asVoter)
	s.health.poke()
	return &storepb.Member{Id: id, Address: addr, Suffrage: suffrage(asVoter)}, nil
}

// RemoveMember removes a control node; the odd-quorum policy then promotes a
// healthy non-voter or demotes a voter to keep the voter count odd.
func (s *Store) RemoveMember(ctx context.Context, id string) error {
	if !s.IsLeader() {
		_, err := forwardCluster(ctx, s, func(c storepb.ClusterClient) (*storepb.Member, error) {
			_, err := c.MemberRemove(ctx, &storepb.MemberRemoveRequest{Id: id})
			return nil, err
		})
		return err
	}
	if _, err := s.memberByID(ctx, id); err != nil {
		return err
	}
	if err := s.await(s.raft.RemoveServer(raft.ServerID(id), 0, s.cfg.ApplyTimeout), s.cfg.ApplyTimeout); err != nil {
		return fmt.Errorf("member remove %s: %w", id, mapRaftErr(err))
	}
	s.log.Info("member removed", "id", id)
	s.health.resumed(id)
	return nil
}

func (s *Store) memberByID(ctx context.Context, id string) (*storepb.Member, error) {
	ms, err := s.Members(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if m.Id == id {
			return m, nil
		}
	}
	return nil, fmt.Errorf("%w: no member %q", ErrKeyNotFound, id)
}

func suffrage(voter bool) storepb.Member_Suffrage {
	if voter {
		return storepb.Member_VOTER
	}
	return storepb.Member_NONVOTER
}

// targetVoters is the odd-quorum policy: the largest odd number of voters
// the members allow, capped at max.
func targetVoters(members, max int) int {
	t := members
	if t%2 == 0 {
		t--
	}
	if t > max {
		t = max
		if t%2 == 0 {
			t--
		}
	}
	if t < 1 {
		t = 1
	}
	return t
}

// reconcileVoters promotes healthy non-voters or demotes voters until the
// voter count is the policy's target. Runs on the leader only.
func (s *Store) reconcileVoters(ctx context.Context) error {
	members, err := s.Members(ctx)
	if err != nil {
		return err
	}
	var voters, nonvoters []*storepb.Member
	for _, m := range members {
		if m.Suffrage == storepb.Member_VOTER {
			voters = append(voters, m)
		} else {
			nonvoters = append(nonvoters, m)
		}
	}
	target := targetVoters(len(members), s.cfg.MaxVoters)
	var errs []error
	for _, m := range nonvoters {
		if len(voters) >= target {
			break
		}
		if !m.Healthy {
			continue
		}
		if err := s.await(s.raft.AddVoter(raft.ServerID(m.Id), raft.ServerAddress(m.Address), 0, s.cfg.ApplyTimeout), s.cfg.ApplyTimeout); err != nil {
			errs = append(errs, fmt.Errorf("promote %s: %w", m.Id, err))
			continue
		}
		s.log.Info("odd-quorum policy: promoted non-voter", "id", m.Id)
		voters = append(voters, m)
	}
	// Demote the surplus, unhealthy ones first, never the leader.
	sort.SliceStable(voters, func(i, j int) bool { return !voters[i].Healthy && voters[j].Healthy })
	count := len(voters)
	for _, m := range voters {
		if count <= target {
			break
		}
		if m.Id == s.cfg.ID {
			continue
		}
		if err := s.await(s.raft.DemoteVoter(raft.ServerID(m.Id), 0, s.cfg.ApplyTimeout), s.cfg.ApplyTimeout); err != nil {
			errs = append(errs, fmt.Errorf("demote %s: %w", m.Id, err))
			continue
		}
		s.log.Info("odd-quorum policy: demoted voter to non-voter", "id", m.Id)
		count--
	}
	return errors.Join(errs...)
}

func mapRaftErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrStopped
	}
	return err
}

// forwardCluster runs a membership call against the leader.
func forwardCluster(ctx context.Context, s *Store, call func(storepb.ClusterClient) (*storepb.Member, error)) (*storepb.Member, error) {
	_, addr := s.Leader()
	if addr == "" {
		return nil, ErrNoLeader
	}
	c, err := s.peers.cluster(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoLeader, err)
	}
	m, err := call(c)
	if err != nil {
		return nil, FromStatus(err)
	}
	return m, nil
}
