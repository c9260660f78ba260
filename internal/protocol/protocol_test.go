package protocol

import (
	"slices"
	"strings"
	"testing"

	tchsmpb "github.com/tchsm/tchsm/proto"
)

func TestFromHealth(t *testing.T) {
	for _, tc := range []struct {
		name       string
		h          *tchsmpb.Health
		want       Peer
		compatible bool
	}{
		{"release before protocol versions", &tchsmpb.Health{Node: "node-1", Version: "v0.9.0"}, Peer{Protocol: V1, MinProtocol: V1}, true},
		{"legacy features ignored without a protocol", &tchsmpb.Health{Features: []string{SignBatch}}, Peer{Protocol: V1, MinProtocol: V1}, true},
		{"this release", func() *tchsmpb.Health { h := &tchsmpb.Health{}; Advertise(h, NodeFeatures); return h }(),
			Peer{Protocol: Current, MinProtocol: Min, Features: NodeFeatures}, true},
		{"a newer release that still serves ours", &tchsmpb.Health{Protocol: Current + 3, MinProtocol: Current, Features: []string{"x"}},
			Peer{Protocol: Current + 3, MinProtocol: Current, Features: []string{"x"}}, true},
		{"a release that no longer serves ours", &tchsmpb.Health{Protocol: Current + 5, MinProtocol: Current + 1},
			Peer{Protocol: Current + 5, MinProtocol: Current + 1}, false},
		{"no min_protocol", &tchsmpb.Health{Protocol: V2}, Peer{Protocol: V2, MinProtocol: V1}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := FromHealth(tc.h)
			if got.Protocol != tc.want.Protocol || got.MinProtocol != tc.want.MinProtocol || !slices.Equal(got.Features, tc.want.Features) {
				t.Fatalf("FromHealth = %+v, want %+v", got, tc.want)
			}
			if got.Compatible() != tc.compatible {
				t.Fatalf("Compatible = %v", got.Compatible())
			}
			if got.Has(SignBatch) != slices.Contains(tc.want.Features, SignBatch) {
				t.Fatalf("Has(sign_batch) = %v", got.Has(SignBatch))
			}
		})
	}
}

// A peer's list is bounded: a hostile or broken node cannot make the client keep a long one.
func TestFromHealthBounded(t *testing.T) {
	h := &tchsmpb.Health{Protocol: V2, Features: []string{strings.Repeat("a", 65), SignBatch}}
	for range 100 {
		h.Features = append(h.Features, "f")
	}
	p := FromHealth(h)
	if len(p.Features) != 64 || !p.Has(SignBatch) || slices.Contains(p.Features, strings.Repeat("a", 65)) {
		t.Fatalf("%d features kept, sign_batch %v", len(p.Features), p.Has(SignBatch))
	}
}
