package runtime

import (
	"bytes"
	"testing"
)

// A burst of tiny chunks (a terminal echoing keystrokes) while the caller is
// not reading does not cut it off: the backlog is counted in bytes and
// consecutive chunks of a stream are merged, in order.
func TestAttachBacklogCountsBytesNotChunks(t *testing.T) {
	cl := &containerLog{}
	s := cl.subscribe()
	var want bytes.Buffer
	for i := 0; i < 10000; i++ {
		cl.broadcast("stdout", []byte{'a' + byte(i%26)})
		want.WriteByte('a' + byte(i%26))
	}
	cl.broadcast("stderr", []byte("oops"))
	cl.broadcast("stdout", []byte("!"))
	select {
	case <-s.lost:
		t.Fatal("a caller 10,000 one-byte chunks behind was cut off")
	default:
	}
	got := s.take()
	if len(got) != 3 || got[0].stream != "stdout" || !bytes.Equal(got[0].data, want.Bytes()) ||
		got[1].stream != "stderr" || string(got[1].data) != "oops" || got[2].stream != "stdout" || string(got[2].data) != "!" {
		t.Fatalf("queued output: %d chunks, first %q…", len(got), got[0].data[:10])
	}
	if len(s.take()) != 0 {
		t.Fatal("take left output queued")
	}
}

// A caller that falls subBacklogBytes behind is cut off; the others go on.
func TestAttachSlowCallerCutOff(t *testing.T) {
	cl := &containerLog{}
	slow, fast := cl.subscribe(), cl.subscribe()
	chunk := make([]byte, 32<<10)
	for i := 0; i < subBacklogBytes/len(chunk)+1; i++ {
		cl.broadcast("stdout", chunk)
		fast.take()
	}
	select {
	case <-slow.lost:
	default:
		t.Fatalf("a caller %d bytes behind was not cut off", subBacklogBytes+len(chunk))
	}
	select {
	case <-fast.lost:
		t.Fatal("a caller keeping up was cut off")
	default:
	}
	if _, still := cl.subs[slow]; still {
		t.Fatal("the cut-off caller still receives output")
	}
}
