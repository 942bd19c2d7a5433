package consensus

import (
	"sync"

	"github.com/hashicorp/raft"
)

// safeTransport is raft's NetworkTransport with pipelined replication that
// cannot park a follower's replication for good (hashicorp/raft#612).
//
// The hang it prevents: raft's pipelineDecode stops reading the pipeline's
// responses as soon as one says Success=false or carries a newer term (or
// the read failed, which looks the same). netPipeline's decoder then
// blocks handing the next response to a channel nobody reads, so the next
// pipelined send blocks on its in-flight channel, and raft's send loop,
// stuck in that send, never sees that the decoder finished. Heartbeats run
// on their own connection and keep the follower from starting an
// election, so nothing heals it, and raft's Shutdown waits for the stuck
// goroutine for ever.
//
// The wrapper's pipeline forwards responses to raft and, right after it
// forwards one that ends raft's decoder (or when raft closes the
// pipeline), stops forwarding and closes the inner pipeline: the stuck
// decoder and any blocked send return (netPipeline selects on its shutdown
// channel at both places), the connection is closed, and every later
// AppendEntries fails at once. Raft's send loop then stops, falls back to
// plain AppendEntries for that follower and starts a new pipeline once it
// succeeds.
//
// It embeds *raft.NetworkTransport so the optional interfaces raft looks
// for on its transport keep holding: WithPreVote (pre-vote elections,
// checked in raft.NewRaft and at each election) and WithClose (closed by
// raft's Shutdown).
type safeTransport struct {
	*raft.NetworkTransport
}

var (
	_ raft.Transport   = safeTransport{}
	_ raft.WithClose   = safeTransport{}
	_ raft.WithPreVote = safeTransport{}
)

// AppendEntriesPipeline returns a pipeline that stops itself once raft
// stops reading it. With pipelining off (MaxRPCsInFlight < 2) the inner
// transport answers ErrPipelineReplicationNotSupported, passed on as is.
func (t safeTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	return newSafePipeline(p), nil
}

// safePipeline wraps one raft.AppendPipeline; see safeTransport.
type safePipeline struct {
	inner raft.AppendPipeline
	out   chan raft.AppendFuture

	// stopped is closed once forwarding ended: a response that ends
	// raft's decoder was forwarded, or Close was called. The inner
	// pipeline is closed right after.
	stopped  chan struct{}
	stopOnce sync.Once
	// closed is closed by Close.
	closed    chan struct{}
	closeOnce sync.Once
	// done is closed when the forwarding goroutine has returned.
	done chan struct{}
}

func newSafePipeline(inner raft.AppendPipeline) *safePipeline {
	p := &safePipeline{
		inner:   inner,
		out:     make(chan raft.AppendFuture),
		stopped: make(chan struct{}),
		closed:  make(chan struct{}),
		done:    make(chan struct{}),
	}
	go p.forward()
	return p
}

// endsDecoder reports whether raft's pipelineDecode returns after reading
// this response (replication.go in hashicorp/raft): a newer term, or no
// success (a failed read leaves the zero response, Success=false).
func endsDecoder(f raft.AppendFuture) bool {
	req, resp := f.Request(), f.Response()
	return req == nil || resp == nil || resp.Term > req.Term || !resp.Success
}

func (p *safePipeline) forward() {
	defer close(p.done)
	defer p.stop()
	in := p.inner.Consumer()
	for {
		select {
		case f := <-in:
			// Decide before handing it over: raft owns f afterwards.
			last := endsDecoder(f)
			select {
			case p.out <- f:
			case <-p.closed:
				return
			}
			if last {
				// Raft reads nothing more from out. Closing the inner
				// pipeline releases its decoder (blocked handing the next
				// response to us) and any send waiting for that decoder;
				// what is still in flight is dropped with the connection,
				// as raft's own Close would.
				return
			}
		case <-p.closed:
			return
		}
	}
}

// stop ends the pipeline for good: later sends fail at once.
func (p *safePipeline) stop() {
	p.stopOnce.Do(func() {
		close(p.stopped)
		_ = p.inner.Close()
	})
}

// AppendEntries pipelines a request, or fails with ErrPipelineShutdown once
// the pipeline stopped. A send already blocked in the inner pipeline when
// it stops returns that error too.
func (p *safePipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	select {
	case <-p.stopped:
		return nil, raft.ErrPipelineShutdown
	default:
	}
	return p.inner.AppendEntries(args, resp)
}

// Consumer delivers the responses, in order, until the first that ends
// raft's decoder.
func (p *safePipeline) Consumer() <-chan raft.AppendFuture { return p.out }

// Close stops the pipeline and waits for its goroutine.
func (p *safePipeline) Close() error {
	p.closeOnce.Do(func() { close(p.closed) })
	p.stop()
	<-p.done
	return nil
}
