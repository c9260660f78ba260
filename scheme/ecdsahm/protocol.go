package ecdsahm

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/tchsm/tchsm/scheme"
)

// Protocol names, bound into every sealed message's additional data.
const (
	protoKeyGen  = "keygen"
	protoPresign = "presign"
	protoEcho    = "echo"
)

// checkSet checks a signer set against a key: exactly 2t+1 distinct indices in 1..n, strictly
// increasing (one encoding per set), containing self when self > 0.
func checkSet(set []int, n, t, self int) error {
	if len(set) != 2*t+1 {
		return fmt.Errorf("%w: a set of %d participants; this key needs exactly 2t+1 = %d", ErrInvalidParams, len(set), 2*t+1)
	}
	for a, i := range set {
		if i < 1 || i > n || (a > 0 && i <= set[a-1]) {
			return fmt.Errorf("%w: signer set %v is not strictly increasing in 1..%d", ErrInvalidParams, set, n)
		}
	}
	if self > 0 && !slices.Contains(set, self) {
		return fmt.Errorf("%w: participant %d is not in the signer set %v", ErrInvalidParams, self, set)
	}
	return nil
}

func encodeSet(set []int) []byte {
	b := []byte{byte(len(set))}
	for _, i := range set {
		b = append(b, byte(i))
	}
	return b
}

// sealAll seals one body per recipient (bodies[j] for each j of to) as messages of round.
func sealAll(ch *Channel, proto string, session []byte, round byte, to []int, body func(j int) []byte) ([]scheme.Message, error) {
	out := make([]scheme.Message, 0, len(to))
	for _, j := range to {
		p, err := ch.seal(j, proto, session, round, body(j))
		if err != nil {
			return nil, err
		}
		out = append(out, scheme.Message{From: ch.self, To: j, Payload: p})
	}
	return out, nil
}

// collect opens the messages of round addressed to this participant and returns exactly one
// body from each of from, each of length size. A message that does not open (not from its
// claimed sender, another session or round) is ignored, as if the relay had dropped it; a
// sender missing, or two different openable messages from one sender, is ErrProtocol.
func collect(ch *Channel, proto string, session []byte, round byte, in []scheme.Message, from []int, size int) (map[int][]byte, error) {
	got := make(map[int][]byte, len(from))
	for _, m := range in {
		if m.To != ch.self || !slices.Contains(from, m.From) {
			continue
		}
		body, err := ch.open(m.From, proto, session, round, m.Payload)
		if err != nil {
			continue
		}
		if prev, ok := got[m.From]; ok {
			if string(prev) != string(body) {
				return nil, fmt.Errorf("%w: participant %d sent two different round-%d messages", ErrProtocol, m.From, round)
			}
			continue
		}
		if len(body) != size {
			return nil, fmt.Errorf("%w: participant %d's round-%d message has %d bytes, want %d", ErrProtocol, m.From, round, len(body), size)
		}
		got[m.From] = body
	}
	var missing []int
	for _, j := range from {
		if _, ok := got[j]; !ok {
			missing = append(missing, j)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: round %d: no valid message from %v", ErrProtocol, round, missing)
	}
	return got, nil
}

func others(set []int, self int) []int {
	out := make([]int, 0, len(set))
	for _, j := range set {
		if j != self {
			out = append(out, j)
		}
	}
	return out
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
