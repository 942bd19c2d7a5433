package consensus

import (
	"fmt"

	"github.com/klauspost/compress/s2"

	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// Command payloads are compressed before they reach the Raft log when that
// pays: every byte of an entry is copied by raft-boltdb's msgpack encoding
// and into bbolt's pages, written and fsynced on each replica, and sent
// through TLS to every follower. The writes that dominate a busy cluster —
// batches of pods created from one template, their binds — repeat most of
// their bytes, so a batch shrinks several times over for a few µs of S2
// (the fastest codec in a library the project already uses; its block
// format carries the decoded length, which bounds the buffer up front).
const (
	// compressMinBytes: below this a payload (a lease renewal, one small
	// put) is stored raw; S2's saving would not pay for its call.
	compressMinBytes = 2 << 10
	// maxDecodedPayload refuses an entry claiming more than any command
	// can hold (the API's messages are ≤ 4 MiB, a batch entry ≤
	// maxEntryBytes), so a corrupt entry cannot ask for a huge buffer.
	maxDecodedPayload = 64 << 20
)

// compressPayload returns the payload as it goes into the command: S2 when
// it is large enough and shrinks by at least an eighth, raw otherwise.
func compressPayload(p []byte) ([]byte, storepb.Command_Encoding) {
	if len(p) < compressMinBytes {
		return p, storepb.Command_RAW
	}
	c := s2.Encode(make([]byte, s2.MaxEncodedLen(len(p))), p)
	if len(c) > len(p)-len(p)/8 {
		return p, storepb.Command_RAW
	}
	return c, storepb.Command_S2
}

// commandPayload returns a decoded command's payload in its raw form. A
// decompressed payload is a fresh buffer that nothing else holds, so the
// FSM may keep records aliasing it, as it does the log entry itself.
func commandPayload(cmd *storepb.Command) ([]byte, error) {
	switch cmd.Encoding {
	case storepb.Command_RAW:
		return cmd.Payload, nil
	case storepb.Command_S2:
		n, err := s2.DecodedLen(cmd.Payload)
		if err != nil {
			return nil, fmt.Errorf("s2 payload: %w", err)
		}
		if n > maxDecodedPayload {
			return nil, fmt.Errorf("s2 payload claims %d bytes, limit %d", n, maxDecodedPayload)
		}
		out, err := s2.Decode(make([]byte, n), cmd.Payload)
		if err != nil {
			return nil, fmt.Errorf("s2 payload: %w", err)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("payload encoding %d not supported", cmd.Encoding)
	}
}
