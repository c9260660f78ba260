// Package protocol is tchsm's wire-protocol version and feature list: what a node or dealer
// advertises in Health (fields protocol, min_protocol, features) and what a client asks of a
// peer before it uses a message an older peer would not understand.
//
// The rules (docs/operations/upgrade.md):
//
//   - A process of release N serves every message of release N−1 (Previous) and reads every
//     record N−1 wrote; it writes records N−1 reads, so that a node can be rolled back.
//   - Envelope.version is the version of the envelope's encoding and signing input
//     (trust.EnvelopeVersion), changed only when that encoding changes. New body types and
//     new fields need no new envelope version: a receiver that does not know a body type
//     answers it, once the envelope is authenticated, with Error UNSUPPORTED_BODY_TYPE; a
//     receiver ignores body fields it does not know.
//   - Current is bumped when a release adds a message a client may want to send; a feature
//     that is optional (a node may be configured without it) is named in Features instead.
//   - A client sends a peer a message beyond protocol 1 only when the peer advertises it
//     (Has). A peer it has not heard from yet, or one that advertises nothing (a release
//     before v0.10, which sends no protocol field), gets protocol 1 without its optional
//     features: for signing, plain SignRequests. A peer that answers UNSUPPORTED_BODY_TYPE
//     (or, before v0.10, rejects the body type) is asked again with the older message, and
//     its features are learnt again.
package protocol

import (
	"slices"

	tchsmpb "github.com/tchsm/tchsm/proto"
)

// Protocol versions.
const (
	// V1 is every release before v0.10: no protocol field in Health, and a fixed set of
	// messages (everything in tchsm.proto up to WithTickets, 31).
	V1 = 1
	// V2 adds the protocol, min_protocol and features fields to Health and the
	// UNSUPPORTED_BODY_TYPE and UNSUPPORTED_VERSION answers.
	V2 = 2
	// Current is the protocol this release speaks.
	Current = V2
	// Min is the oldest protocol this release serves: release N−1's.
	Min = V1
)

// Previous is release N−1, the release this one must work with in a mixed cluster: the tag
// and the commit it names (the tag may be missing in a clone, the commit is not). The
// mixed-version test (e2e/upgrade) builds the old binary from PreviousCommit.
const (
	Previous       = "v0.9.0"
	PreviousCommit = "78474c25030aa9d4424fd694510d4e265b37c533"
)

// Optional features, by the name peers advertise.
const (
	// SignBatch: the peer serves SignBatch (several SignRequests in one message). Releases
	// of protocol 1 before 2026-11-23 refuse it, and v0.9.0, which serves it, does not say
	// so: a client sends batches only to peers that advertise this.
	SignBatch = "sign_batch"
)

// NodeFeatures are the features a node of this release serves.
var NodeFeatures = []string{SignBatch}

// DealerFeatures are the features the dealer service of this release serves.
var DealerFeatures = []string{}

// Advertise fills a Health report's protocol fields with this release's protocol and the
// features given.
func Advertise(h *tchsmpb.Health, features []string) {
	h.Protocol, h.MinProtocol, h.Features = Current, Min, slices.Clone(features)
}

// Peer is what a client knows of one peer's protocol.
type Peer struct {
	Protocol    int      // 1 for a peer that sends no protocol field
	MinProtocol int      // the oldest protocol it serves
	Features    []string // the optional features it advertised
}

// FromHealth reads a peer's protocol from its Health report. A report without a protocol
// field comes from a release before v0.10: protocol 1, no advertised features.
func FromHealth(h *tchsmpb.Health) Peer {
	p := Peer{Protocol: int(h.GetProtocol()), MinProtocol: int(h.GetMinProtocol())}
	if p.Protocol == 0 {
		return Peer{Protocol: V1, MinProtocol: V1}
	}
	if p.MinProtocol == 0 {
		p.MinProtocol = V1
	}
	// Bounded: a peer's list is only ever compared with this release's names.
	for _, f := range h.GetFeatures() {
		if len(p.Features) < 64 && len(f) <= 64 {
			p.Features = append(p.Features, f)
		}
	}
	return p
}

// Has reports whether the peer advertised feature f.
func (p Peer) Has(f string) bool { return slices.Contains(p.Features, f) }

// Compatible reports whether this release and the peer share a protocol: the peer serves
// this release's messages, or at least protocol Min's.
func (p Peer) Compatible() bool { return p.MinProtocol <= Current && p.Protocol >= Min }
