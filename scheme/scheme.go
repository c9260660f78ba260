package scheme

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"time"

	tchsmpb "github.com/tchsm/tchsm/proto"
)

// Algorithm identifies a threshold signature scheme. It travels in KeyRecord.algorithm; the
// numbers never change.
type Algorithm uint32

const (
	// Unspecified is what a key record written before records named their algorithm carries
	// (release a807de5 and earlier): those keys are all ShoupRSA. Use Of to read a record's
	// algorithm, never the raw field.
	Unspecified Algorithm = 0
	// ShoupRSA is Shoup's threshold RSA with a dealer (package scheme/shoup): PKCS#1 v1.5
	// signatures, one round, proofs of share correctness on demand.
	ShoupRSA Algorithm = 1
	// Ed25519FROST is FROST(Ed25519, SHA-512) of RFC 9591 with a distributed key generation
	// (package scheme/frost): Ed25519 signatures (DNSSEC algorithm 15) that crypto/ed25519
	// verifies, commitments handed out in advance, one signing round, no dealer. Named after
	// the signature it makes first and the protocol second, as ShoupRSA is.
	Ed25519FROST Algorithm = 2
	// ECDSAP256HM is the honest-majority threshold ECDSA P-256 of Damgård, Jakobsen, Nielsen,
	// Pagter and Østergaard (SCN 2020) with a dealerless key generation (package
	// scheme/ecdsahm): ECDSA P-256 signatures (DNSSEC algorithm 13) that crypto/ecdsa
	// verifies, presignatures made in batches by a fixed set of exactly 2t+1 nodes (Presigner),
	// and an echo round among the set before any share is released. Its nodes talk to each
	// other through the coordinator when signing (PeerParticipants).
	ECDSAP256HM Algorithm = 3
)

// Of returns the algorithm of a key record (ShoupRSA for records that name none).
func Of(rec *tchsmpb.KeyRecord) Algorithm {
	if a := Algorithm(rec.GetAlgorithm()); a != Unspecified {
		return a
	}
	return ShoupRSA
}

func (a Algorithm) String() string {
	switch a {
	case ShoupRSA:
		return "rsa"
	case Ed25519FROST:
		return "ed25519"
	case ECDSAP256HM:
		return "ecdsa-p256-hm"
	case Unspecified:
		return "unspecified"
	}
	return fmt.Sprintf("Algorithm(%d)", uint32(a))
}

// Sentinel errors. Implementations wrap them (with their own, more precise errors) so that
// callers can decide with errors.Is without knowing the scheme.
var (
	ErrUnknownAlgorithm = errors.New("scheme: unknown algorithm")
	ErrInvalidKey       = errors.New("scheme: invalid key parameters")
	ErrInvalidShare     = errors.New("scheme: invalid secret share")
	// ErrInvalidRequest: a request the participant refuses as malformed (a message too long
	// for the key, a round it is not in); the coordinator's fault, not the node's.
	ErrInvalidRequest = errors.New("scheme: invalid request")
	// ErrBadShare: a participant's reply is malformed or failed its check. When it comes out
	// of Accept or Judge, the participant is to blame.
	ErrBadShare = errors.New("scheme: bad signature share")
	// ErrBadSignature: the combined signature does not verify; some reply held was wrong, and
	// the coordinator runs the audit round (Coordinator.Audit) to find out which.
	ErrBadSignature    = errors.New("scheme: combined signature does not verify")
	ErrNotEnoughShares = errors.New("scheme: not enough replies")
	// ErrNextRound is returned by Coordinator.Finish when the replies of this round are in
	// and the session goes on with another round: ask the participants (Request) again.
	ErrNextRound = errors.New("scheme: the session goes on with another round")
	// ErrNotSupported: the scheme does not offer this operation (a dealer-less scheme asked to
	// deal, a wire feature not carried yet).
	ErrNotSupported = errors.New("scheme: not supported")
	// ErrStale: the request names per-requester state the participant no longer holds (FROST:
	// a commitment already used, expired, evicted, or lost in a restart). Not a fault of
	// either side: the coordinator asks for fresh state (Precommitter) and starts again.
	ErrStale = errors.New("scheme: stale request")
)

// PublicKey is a key's public parameters, decoded from its signed key record by
// Scheme.DecodePublic: the only source of a key's parameters for a node or a client (never a
// request). Implementations are immutable and safe for concurrent use.
type PublicKey interface {
	Algorithm() Algorithm
	// Threshold returns k, the number of participants a signature needs, and n, the number of
	// shares (participants are numbered 1..n, the manifest's node indices).
	Threshold() (k, n int)
	// Bits is the key size: the modulus length for RSA.
	Bits() int
	// Public is the ordinary public key that verifies the scheme's signatures:
	// *rsa.PublicKey for ShoupRSA, ed25519.PublicKey for Ed25519FROST, *ecdsa.PublicKey (P-256)
	// for ECDSAP256HM.
	Public() crypto.PublicKey
	// Verify checks a whole signature on data, data as mech defines it (Backend.Sign).
	Verify(mech Mechanism, data, sig []byte) error
}

// SecretShare is one participant's share of a key's secret. Never log one; Wipe it when done.
type SecretShare interface {
	Index() int // 1..n
	Wipe()
}

// Message is a scheme-opaque message from one participant to others within a session round
// (a DKG deal, a CGGMP round message). The coordinator relays it in the recipient's next
// Request (Request.Relayed), or the nodes send it to each other directly.
type Message struct {
	From, To int // participant indices; To 0: every other participant of the session
	Payload  []byte
}

// Request is what the coordinator sends one participant in one round of a signing session.
type Request struct {
	// Session names the session on the participants that keep state across rounds (chosen by
	// the coordinator, unique per session); empty for one-round schemes.
	Session []byte
	// Round counts from 1.
	Round int
	// Audit marks the round that checks a participant's earlier reply, asked only after a
	// failed combination (RSA: a proof of share correctness).
	Audit bool
	// Payload is scheme-opaque: RSA's is the PKCS#1 v1.5 payload T.
	Payload []byte
	// Relayed holds other participants' messages of the previous round addressed to this one.
	Relayed []Message
	// Requester names who asked, as the node's trust layer authenticated it (the client's
	// name): set by the node from the message's authenticated sender, never from a payload;
	// the coordinator leaves it empty. Schemes with per-requester state key it by this
	// (FROST's nonces are handed to one requester and capped per requester).
	Requester string
}

// Reply is a participant's answer to one Request.
type Reply struct {
	// Payload is scheme-opaque: RSA's is the signature share x_i, big-endian.
	Payload []byte
	// Proof is the evidence an audit asked for, in the scheme's parts: RSA's two (c, z) travel
	// as ShareProof's c and z.
	Proof [][]byte
	// Messages are for other participants, to be relayed into the next round.
	Messages []Message
}

// Coordinator is the coordinator's (the client's) side of one signing session. The coordinator
// decides whom to ask and when (node choice, hedging, batching, timeouts); the Coordinator says
// what to ask, checks what comes back, and combines. It is not safe for concurrent use.
//
// A session runs in rounds: the coordinator sends Request(i) to the participants it chose and
// passes each reply to Accept; once Quorum replies are held it calls Finish, which returns the
// signature (verified), ErrNextRound (send the next round's requests), or ErrBadSignature. On
// ErrBadSignature the coordinator sends Audit(i) to every participant in Held (when it asks for
// a message), passes each answer to Judge, Drops the participants it could not audit, and calls Finish again with what
// is left (or FinishAny when every audit passed).
type Coordinator interface {
	// Quorum is the number of participants whose replies the signature needs.
	Quorum() int
	// Open reports whether any Quorum of the n participants can sign, and participants may be
	// added at any time within the session (RSA: hedging is asking one more node). When false,
	// the participant set is fixed by the first round's requests (FROST, CGGMP); a hedge is
	// then a new session with another set.
	Open() bool
	// Request returns the current round's request for participant i.
	Request(i int) (Request, error)
	// Accept checks participant i's reply to the current round (its form: ErrBadShare when
	// malformed) and keeps it.
	Accept(i int, rep Reply) error
	// Held returns the participants whose replies of the current round are held, in the order
	// they were accepted.
	Held() []int
	// Drop forgets participant i's reply (it could not be audited, or it left the session).
	Drop(i int)
	// Finish combines the first Quorum replies held and verifies the result: the signature,
	// ErrNotEnoughShares, ErrNextRound, or ErrBadSignature. It never returns an unverified
	// signature.
	Finish() ([]byte, error)
	// Audit returns the request that checks participant i's held reply; ask is false when the
	// check needs no message (FROST checks a share against its verification share): pass a
	// zero Reply to Judge then.
	Audit(i int) (req Request, ask bool, err error)
	// Judge checks participant i's answer to Audit(i). It returns an error wrapping
	// ErrBadShare, and drops the reply, when participant i lied.
	Judge(i int, rep Reply) error
	// FinishAny is Finish for when every held reply passed its audit and Finish still failed,
	// which only keys whose audits are not sound allow (RSA without safe primes): it tries
	// other subsets of the replies held.
	FinishAny() ([]byte, error)
}

// Participant is a node's side of one key, made once when the key is loaded and kept as long
// as the key: it holds the per-key state a scheme needs (FROST's nonces, presignatures, the
// state of sessions in progress). It is safe for concurrent use.
type Participant interface {
	// Respond answers one request. Errors wrap ErrInvalidRequest when the request is at fault.
	Respond(ctx context.Context, rand io.Reader, req Request) (Reply, error)
}

// KeyParams are what a key generation or a DKG is asked for. Fields a scheme has no use for
// are zero.
type KeyParams struct {
	Bits int // key size (RSA: modulus length)
	E    int // RSA public exponent; 0 means the scheme's default
	K, N int // threshold and number of shares
	// DKG is what a distributed key generation needs besides k and n; dealer schemes ignore it.
	DKG DKGParams
}

// DKGParams name one distributed key generation and its participants. They are trusted
// parameters: they come from the node's local configuration (the manifest), never from the wire.
type DKGParams struct {
	// Session names this key generation (the key id) uniquely; every message is bound to it,
	// so that no message of another run is accepted.
	Session []byte
	// Secret is this participant's long-term DKG secret key, Public the long-term DKG public
	// keys of participants 1..n (Public[i-1]), in the scheme's encoding.
	Secret []byte
	Public [][]byte
}

// Precommitter is implemented by schemes whose signers hand out commitments in advance,
// outside any signature (FROST's round one). The client keeps a pool per node and key: it asks
// a node for a batch (CommitRequest, answered by the node's Participant like any request),
// splits the reply into commitments (ParseCommitments, which decodes and checks each one once),
// and starts a signing session with one unused commitment from each node of the set it picked
// (NewSession, which uses them as decoded; the set is then fixed, Open is false). A commitment
// is used in at most one session: once it went out in a request, the client forgets it,
// whatever the outcome.
type Precommitter interface {
	// CommitRequest returns the request for a batch of count commitments.
	CommitRequest(pk PublicKey, count int) (Request, error)
	// ParseCommitments checks participant i's reply to a CommitRequest and returns its
	// commitments, decoded and checked, and how long the participant keeps their nonces.
	ParseCommitments(pk PublicKey, i int, rep Reply) (commitments []Commitment, ttl time.Duration, err error)
	// NewSession starts a signing session for data under mech with the participants of
	// commitments (participant index → one commitment from ParseCommitments for that
	// participant and key).
	NewSession(pk PublicKey, mech Mechanism, data []byte, commitments map[int]Commitment) (Coordinator, error)
}

// Commitment is one commitment a signer handed out in advance, as ParseCommitments decoded
// and checked it: opaque to the caller, which keeps it in a pool and hands it back to
// NewSession unchanged, so that its elements are decoded and checked once, not per session.
type Commitment interface {
	// Signer is the index of the participant that handed it out.
	Signer() int
}

// Scheme is one threshold signature scheme: what node, client, store, trust and the PKCS#11
// token use of it. Implementations are stateless values, listed by algorithm in package
// scheme/schemes.
type Scheme interface {
	Algorithm() Algorithm
	// Mechanisms are the signing mechanisms the scheme accepts.
	Mechanisms() []Mechanism

	// EncodePublic writes pk's scheme-specific parameters into rec, whose common fields (key
	// id, cluster, label, CKA_ID, k, n, creation time) the caller fills.
	EncodePublic(pk PublicKey, rec *tchsmpb.KeyRecord) error
	// DecodePublic checks and decodes the scheme-specific parameters of a key record (already
	// verified, or about to be signed) into a public key.
	DecodePublic(rec *tchsmpb.KeyRecord) (PublicKey, error)

	// MarshalShare encodes a secret share (without its index) for delivery and storage: the
	// KeyShare's s, and the store's plaintext after the index.
	MarshalShare(pk PublicKey, s SecretShare) ([]byte, error)
	// ParseShare decodes participant index's share of pk, checking its form (length, range);
	// it does not check the share against pk's public parameters (CheckShare does).
	ParseShare(pk PublicKey, index int, b []byte) (SecretShare, error)
	// CheckShare verifies a secret share against pk's public parameters (RSA: v^s_i = v_i),
	// in constant time. A node runs it once, when a share is delivered.
	CheckShare(pk PublicKey, s SecretShare) error

	// NewCoordinator starts the coordinator's side of a signing session for data under mech.
	NewCoordinator(pk PublicKey, mech Mechanism, data []byte) (Coordinator, error)
	// NewParticipant makes a node's side of a key.
	NewParticipant(pk PublicKey, s SecretShare) (Participant, error)
}

// Dealer is implemented by schemes whose keys a trusted dealer generates and splits.
type Dealer interface {
	Deal(ctx context.Context, rand io.Reader, p KeyParams) (PublicKey, []SecretShare, error)
}

// DKG is implemented by schemes whose keys the nodes generate together, so that no machine
// ever holds the whole key.
type DKG interface {
	// NewDKG starts participant self's side of a distributed key generation.
	NewDKG(self int, p KeyParams, rand io.Reader) (KeyGeneration, error)
}

// KeyGeneration is one participant's side of a distributed key generation, run in rounds like
// a signing session: each round's messages from the other participants go in, this
// participant's messages for the next round come out, until done.
type KeyGeneration interface {
	// Step takes the messages of the current round addressed to this participant (none in the
	// first round) and returns its messages of the next; done reports that the key is made.
	Step(in []Message) (out []Message, done bool, err error)
	// Result returns the public key and this participant's share once Step reported done.
	// Every participant signs the public key (its key record) so that the client accepts the
	// key only when they agree.
	Result() (PublicKey, SecretShare, error)
}

// Presigner is implemented by schemes whose signers make presignatures in advance, in batches,
// among a fixed set of participants and outside any signature (ECDSAP256HM: DJNPØ20's
// three-round preprocessing among exactly 2t+1 nodes). It differs from Precommitter in two ways
// the boundary has to show: a presignature is made by the whole set together (the participants
// exchange messages, which the coordinator relays, so a batch is a multi-round session of its
// own, Presigning), and it can only ever be used by that set. The client keeps its pools per
// set (Presignature.Set), forgets a presignature once it went out in a request, whatever the
// outcome, and discards a set's pool when one of its nodes fails.
type Presigner interface {
	// NewPresigning starts the coordinator's side of one presigning run: count presignatures
	// (1..the scheme's batch limit) among set (exactly the number of signers the key needs,
	// strictly increasing), named batch (16 to 64 random bytes, never used twice for a key: the
	// participants refuse a batch they have run).
	NewPresigning(pk PublicKey, set []int, batch []byte, count int) (Presigning, error)
	// NewPresignedSession starts a signature for data under mech with presignature p (from a
	// Presigning of this key). Its set is p's, fixed (Open is false, Quorum is the whole set),
	// and it may take more than one round: Finish returns ErrNextRound after round 1 of
	// ECDSAP256HM's signature (the echo round, whose replies carry Messages for the other
	// members, relayed in round 2's requests) and the signature after round 2.
	NewPresignedSession(pk PublicKey, mech Mechanism, data []byte, p Presignature) (Coordinator, error)
}

// Presigning is the coordinator's side of one presigning run: rounds like a Coordinator's
// (Request, Accept, Finish until it stops returning ErrNextRound), every member of the set
// answering every round, with the messages of each round's replies relayed in the next
// round's requests. It is not safe for concurrent use.
type Presigning interface {
	// Set returns the participants of the run.
	Set() []int
	// Request returns the current round's request for participant i of the set.
	Request(i int) (Request, error)
	// Accept checks participant i's reply to the current round (its form: ErrBadShare when
	// malformed) and keeps it.
	Accept(i int, rep Reply) error
	// Finish ends the current round once every member's reply is held: ErrNextRound (send the
	// next round's requests), ErrNotEnoughShares, or, after the last round, the presignatures
	// that every member reported identically (the others are dropped: they are spent).
	Finish() ([]Presignature, error)
}

// Presignature is the coordinator's view of one presignature (no secret: its id, its set, and
// the scheme's public part), opaque to the caller, which keeps it in the set's pool and hands
// it to NewPresignedSession once.
type Presignature interface {
	ID() []byte
	Set() []int
}

// PeerParticipants is implemented by schemes whose participants exchange messages with each
// other when they sign, not only at key generation (ECDSAP256HM's presigning and echo round):
// their messages are sealed to their recipient with keys from the nodes' long-term DKG keys of
// the manifest, so that the coordinator relays them without reading or forging them. The node
// makes such a key's Participant with NewPeerParticipant (NewParticipant returns
// ErrNotSupported). p is trusted, from the node's own configuration: Session is the key id
// (the record's), Secret this node's long-term DKG secret, Public the long-term DKG public keys
// of participants 1..n.
type PeerParticipants interface {
	NewPeerParticipant(pk PublicKey, s SecretShare, p DKGParams) (Participant, error)
}
