// Package scheme is tchsm's boundary between the cluster (node, client, store, trust, the PKCS#11
// token) and the threshold signature schemes. Each scheme lives in its own folder below this one
// (scheme/shoup: Shoup's threshold RSA) and is listed by algorithm id in scheme/schemes; nothing
// outside a scheme's folder knows its mathematics.
//
// A scheme provides (Scheme): the encoding of its public parameters in a key record
// (EncodePublic, DecodePublic: RSA keeps the record fields of the releases before this package,
// others use KeyRecord.params), the encoding and check of a node's secret share (MarshalShare,
// ParseShare, CheckShare), key generation by a dealer (Dealer) or by the nodes together (DKG,
// KeyGeneration), and signing as a round-based session with a coordinator side (Coordinator,
// on the client) and a participant side (Participant, one per key on each node, holding the
// key's state). Round payloads are opaque bytes; messages between participants (Message) are
// relayed by the coordinator in the next round's requests, or sent directly.
//
// The coordinator keeps the decisions that are not the scheme's: which nodes to ask, hedging,
// batching, deadlines, and the exclusion of a node caught lying. The Coordinator says what to
// ask each participant in each round, checks the replies' form (Accept), combines and verifies
// (Finish), and, after a combination that does not verify, checks each reply held (Audit, Judge)
// so that the liar is named. It never returns an unverified signature.
//
// # Shoup RSA on it
//
// One open round: any k of the n nodes may answer (Open is true), so the client asks the k
// nodes that look best and hedges by asking one more within the same session; Finish combines
// the first k shares without proofs. Only when that fails does the client run the audit round
// (a proof request to each node whose share it holds), drop the shares whose proofs fail and
// exclude their nodes, and go on with the others. The participant is stateless.
//
// # FROST (RFC 9591) on it: commitments in advance, one signing round
//
// Commitments handed out in advance are a round of their own, outside any signature: a node's
// Participant answers a "commit" request with a batch of nonce commitments (D_i, E_i) and keeps
// the nonces in memory (per-key state), each under an id, for one use. The client keeps a pool
// per node. A signature is a session with a fixed set (Open is false, Quorum is k): the client
// picks k nodes with commitments in its pool, and NewCoordinator's Request(i) carries the
// message and the whole commitment list, which fixes the set. Each participant checks the list,
// finds its own commitment, signs, erases the nonce and answers its share z_i: one round trip.
// Finish aggregates and verifies (crypto/ed25519.Verify); on ErrBadSignature, Judge checks each
// z_i against the verification share in the key record, with no further message (Audit asks for
// none), so the liar is named at once. A hedge is a new session with
// fresh commitments from another set; the abandoned session's nonces are burnt on the nodes
// that answered (they are never reused), and an unanswered node's nonce expires. The client
// reaches this through Precommitter (CommitRequest, ParseCommitments, NewSession); the node
// passes the authenticated client as Request.Requester, whose nonces are kept apart and capped.
// Package scheme/frost is the implementation, its package doc the details.
//
// # CGGMP ECDSA on it: several rounds, node-to-node messages
//
// A session with a fixed set (Open is false): round 1's requests carry the digest and the set,
// under a Session id the participants keep their state by. Each reply carries, besides an
// opaque payload for the coordinator, Messages to the other participants (broadcast with To 0,
// or point to point, encrypted to their recipient by the participant). Finish returns
// ErrNextRound until the last round: the client then sends each participant its Request for
// the next round, whose Relayed field holds the other participants' messages of the previous
// round addressed to it. The coordinator learns nothing from a relayed message (it is
// authenticated and encrypted end to end); with a peer queue the nodes may instead send them
// to each other and the coordinator only paces the rounds. The last round's replies are the
// signature shares; the protocol's identifiable abort is the audit round. A three-round
// presignature protocol runs the same way outside any signature, leaving presignatures in the
// Participant's per-key state, and the signature itself is then one round.
//
// # Honest-majority ECDSA P-256 (ECDSAP256HM) on it: presignatures by a set, an echo round
//
// Presignatures are made in batches by a fixed set of exactly 2t+1 nodes that exchange sealed
// messages (Presigner.NewPresigning: a four-request Presigning, every member answering each
// round, each round's Messages relayed in the next round's Relayed), and a presignature can
// only be used by its set, once. The node's Participant comes from PeerParticipants (it needs
// the manifest's long-term keys to seal its messages) and keeps its presignatures per requester,
// in memory only. A signature is a Coordinator from Presigner.NewPresignedSession with two
// rounds: round 1 asks each member to prepare (it consumes the presignature and answers its
// echoes of (key, presignature, set, digest), sealed to each other member); round 2 relays the
// echoes and each member releases its share only if all echoes match its own request, which a
// client that asked members different things (the split view) cannot make happen. Finish
// combines and verifies; a wrong share is detected, not attributed (Audit asks nothing, Judge
// blames no one): the client signs again with another presignature, from another set when
// failures repeat. Package scheme/ecdsahm is the implementation.
//
// # Wire
//
// Today's wire carries one-round sessions only: a request is a SignRequest (payload) or, for
// an audit, a ProofRequest; a reply is a SignatureShare (x, proof) or a Proof. These are the
// messages of the releases before this package, so nodes and clients of both interoperate.
// Session, Round > 1, Relayed and Messages are refused by the client until the first scheme
// that needs them adds their fields to SignRequest and SignatureShare (and node-to-node bodies
// to the authorisation table in internal/trust).
package scheme
