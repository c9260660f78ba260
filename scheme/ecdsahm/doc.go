// Package ecdsahm is the cryptographic core of tchsm's presignature scheme for ECDSA P-256
// (DNSSEC algorithm 13): the honest-majority threshold ECDSA of I. Damgård, T. P. Jakobsen,
// J. B. Nielsen, J. I. Pagter and M. B. Østergaard, "Fast Threshold ECDSA with Honest
// Majority", SCN 2020 (ePrint 2020/501; below DJNPØ20), on filippo.io/nistec for the group and
// filippo.io/bigmod for the scalar field, both constant time. Its signatures are ordinary
// ECDSA P-256 signatures that crypto/ecdsa.Verify accepts: r || s, 64 bytes, the form
// CKM_ECDSA returns. It is scheme.ECDSAP256HM behind the scheme boundary (scheme.go: Scheme, a
// scheme.DKG, scheme.Presigner and scheme.PeerParticipants; boundary.go: the node's
// Participant, the coordinator's Presigning and signing session with the echo round, and their
// payloads); the nodes and the client do not drive it yet.
//
// Sources. The protocol steps follow DJNPØ20's preprocessing and online phase as specified step
// by step in near/mpc's docs/ecdsa/robust_ecdsa/signing.md (a specification of the same
// protocol); the stored copy of the paper available while writing this had only its abstract
// and introduction, so comments name the paper's steps, not its section numbers.
//
// # Parameters
//
// A key has n participants (the manifest's nodes 1..n) and a threshold t: the key x is shared
// with a random polynomial of degree t, so any t+1 shares determine it and any t learn nothing.
// Presigning and signing need exactly 2t+1 participants (a "set"), because the protocol opens a
// product of two degree-t sharings, a degree-2t sharing. For n = 5 that is t = 1 (any 3 sign; 1
// compromised node tolerated) or t = 2 (all 5 must sign; 2 tolerated); n = 7, t = 2 is "any 5
// of 7". checkParams: 1 ≤ t, 2t+1 ≤ n ≤ 64.
//
// # Threat model, in plain words
//
// Of the 2t+1 nodes of a set, up to t may be corrupt: they can send anything, to anyone, at any
// time, and share everything they know with each other and with the client. The client (the
// coordinator, which relays every message between nodes) may be malicious too, and it is the
// party that picks which nodes sign, with which presignature, what. What the scheme promises,
// as long as at most t nodes are corrupt:
//
//   - The key is never in one place: not at key generation (no dealer), not when signing.
//     t nodes and the client together learn nothing about x beyond the public key and the
//     signatures.
//   - Each presignature gives at most one signature, ever: a node answers at most one request
//     per presignature, whatever the request and whatever happens next (an abort, a refused
//     request, a timeout). Two signatures with one nonce would give the key away (presignature
//     reuse, Aumasson–Shlomovits, ePrint 2020/1052).
//   - A presignature is bound to (key, set, presignature id): only its own set can use it.
//   - Any cheating in presigning is detected, and the run aborts before any presignature is
//     usable. It is not attributed: an opening that fails its check cannot say who lied.
//   - A wrong signature share is detected: Combine returns a signature only after
//     crypto/ecdsa.Verify accepted it. It is not attributed either (below).
//   - It does not promise liveness: one corrupt node of a set can make every run of that set
//     abort. The client then uses another set (Pool.Discard, and the client's pools per set).
//
// The relay cannot read or forge what nodes say to each other: every node-to-node message is
// sealed on the Channel (AES-256-GCM under keys from static Diffie-Hellman of the nodes'
// long-term manifest keys, bound to protocol, session, round, sender and recipient). What it
// can do is drop, delay and replay (a replay opens only in the session and round it was made
// for, where the node already holds that sender's message) and, above all, tell different
// nodes different things: the split view.
//
// # Split view, and why signing has an echo round
//
// In one signing round each node sees only its own request, so it cannot know that the other
// 2t were asked the same (presignature, digest, set). The one-round path, Sign, relies on
// binding alone: one request per presignature, bound to key, set and id. That suffices for
// the key's secrecy: with the random degree-2t zero sharing e in every share, the honest
// nodes' shares reveal exactly one linear combination of them, and that is an ECDSA signature
// under the key, with that presignature's r, on one digest A. It does not suffice for what is
// signed: when the client asks honest node 3 for a digest h2 and the other honest nodes for
// h1, A is an affine combination of h1 and h2 that the client can steer to any digest it
// likes, a digest no node was asked to sign, so no node's signing policy ever saw it.
// TestSplitViewAttackOnBindingAlone plays exactly that attacker (a malicious client with t
// corrupt nodes, t = 2 of 5) and gets a valid signature on its own digest. So binding alone
// does not suffice, and this package does not claim it does: the path for tchsm is the echo
// round. Prepare consumes the presignature and returns the node's echo of its request (a hash
// of key, id, set and digest) sealed to each other member; the client relays the echoes; Release
// gives the node's share only if all 2t echoes equal its own request, and otherwise burns the
// presignature (ErrSplitView). Every honest node hears every other honest node, so no two
// honest nodes release shares for different digests; a corrupt node's lying echo only stops
// the signature. This costs one more round trip per signature (two in all), and no
// cryptography beyond the channel. Sign stays for a deployment whose nodes would sign any
// digest for the client anyway (no per-message policy), where the split view gains nothing
// over asking directly; the lead decides, the README must say which.
//
// Digests ≡ 0 mod n are refused (by the node and by Combine): a signature on digest 0 can be
// forged by anyone and proves nothing. tchsm derives no keys and re-randomises no
// presignature with public data, so the Groth–Shoup attacks on presignatures combined with
// additive key derivation (ePrint 2021/1330) have nothing to work on; do not add derivation.
//
// # Key generation (keygen.go)
//
// Dealerless, among all n, with abort: a joint-Feldman DKG whose commitment vectors are first
// committed to by hash. Round 1: each node i draws f_i of degree t and sends each j the hash
// of C_i = (f_i's coefficients · G) and f_i(j), sealed. Round 2: each reveals C_i. Then each
// checks every C_j against its hash and its share from j against C_j (Feldman), and sums: x_i
// = Σ_j f_j(i), Y = Σ_j C_j0, X_m = Σ_j C_j(m). This is DJNPØ20's key generation, [x] ←
// F_rand followed by Y = open([x]·G), with the opening given by the Feldman commitments.
//
// Why not Pedersen's VSS, and the bias. Plain joint-Feldman, where commitments are broadcast
// in round 1 and dealers that draw complaints are excluded while the run goes on, lets a
// rushing adversary see the honest dealers' C_i0 before it decides which of its own dealings
// end up in the key, and so bias Y (Gennaro, Jarecki, Krawczyk, Rabin, "Secure distributed
// key generation for discrete-log based cryptosystems", 1999/2007). Pedersen's VSS (GJKR's
// fix, what the Ed25519 DKG does through kyber) hides the commitments during dealing at the
// cost of a second generator and a second, extraction round. Here the same effect comes from
// the order of things: when the adversary sees an honest C_i it has already committed to its
// own (by hash), and the shares it saw are t of each honest polynomial, which say nothing; and
// nothing is ever excluded: any fault aborts the whole run. What is left is restart bias: an
// adversary can abort a run whose Y it dislikes and hope for the next, one bit of choice per
// run that an operator sees fail. That is the "with abort" of DJNPØ20's model, and it matters
// little for ECDSA: every key the adversary can steer to is still uniform from its point of
// view except for which of a few runs it let finish; the Schnorr-style arguments (Gennaro et
// al., "Secure applications of Pedersen's distributed key generation protocol", CT-RSA 2003)
// tolerate far more than that. Feldman also gives the verification shares X_m = x_m·G, which
// a node uses to check its stored share (SecretShare.Check) and a record to be consistent
// (DecodePublicKey). A dealer that sends different commitments to different nodes makes their
// public keys differ; each node endorses its PublicKey.Marshal and the client must accept a
// key only when all n endorsements carry the same bytes. Not done: a node absent from the key
// generation cannot get its share later (the Ed25519 DKG's LateShare); the run needs all n.
//
// # Presigning (presign.go), three rounds, a batch at a time
//
// Among the 2t+1 of a set, for each presignature of the batch: fresh random sharings k, a of
// degree t and b, e of degree 2t with constant 0, dealt by everyone (round 1); R_i = k_i·G and
// w_i = a_i·k_i + b_i (round 2); R = open([k]·G) with error detection, r = x(R) mod n ≠ 0, w =
// open([w]) over the whole set, w ≠ 0, and W_i = a_i·R (round 3); W = open([a]·R) with error
// detection and the check W = w·G (done). A degree-t opening among 2t+1 detects any error:
// the t+1 honest shares determine the polynomial, so the view passes only with the right
// value, whatever the corrupt nodes sent to whom (checkDegree: one random linear combination
// of the parity equations). The degree-2t opening of w has no redundancy; W = w·G is what
// catches a wrong w (the paper's check), because a is uniform and unknown to the cheater. The
// node keeps c_i = a_i·w^-1 (a share of k^-1), β_i = c_i·x_i and e_i, the online phase's
// products moved into the preprocessing.
//
// # Signing (sign.go), one round for the nodes
//
// s_i = c_i·h + β_i·r + e_i for the digest h (crypto/ecdsa's bits2int of the leftmost 32
// bytes, reduced mod n), a degree-2t share of s = k^-1·(h + r·x); Combine interpolates the
// 2t+1 shares and verifies. s is not normalised to low-s: DNSSEC (RFC 6605) and crypto/ecdsa
// accept either s, and a verifier that insisted on low-s would be Bitcoin's, not a resolver.
// With exactly 2t+1 shares of a degree-2t sharing there is no redundancy: a wrong share is
// detected (the signature does not verify) but not attributed; publishing commitments to the
// shares would give k^-1·G away, which the paper's security argument does not allow. The
// client spends the presignature and signs again with another; repeated failures of one set
// mean a faulty node in it, and the client moves to another set.
//
// # Presignatures are used once (sign.go)
//
// A Presignature answers its first request, Sign or Prepare, and is used from then on,
// whether that request was honoured or refused (wrong binding, digest 0, an echo that does not
// match): "never reuse, even after an abort". Its secrets are wiped once its share is out or
// refused. It has no encoding on purpose: it lives in memory only (a node's Pool per key,
// which also refuses a presignature id it has held before, so a replayed batch cannot bring a
// used one back, and with Begin a batch id it has run before), and a restart discards them
// all. The client's pools must forget a
// presignature once it went out in a request, and discard a set's pool when one of its nodes
// fails (Pool.Discard on the nodes).
//
// # How it differs from tchsm's RSA and Ed25519 keys
//
// Shoup RSA (scheme/shoup) is k-of-n: any k of n nodes sign, in one round, the set open until
// the end (the client hedges by asking one more node), each share provably correct, so a liar
// is named. It needs a trusted dealer who holds the key for a moment. FROST Ed25519
// (scheme/frost) is also k-of-n and dealerless, one round after commitments handed out in
// advance, each share checkable against the signer's verification share, so a liar is named;
// a commitment is bound to the message and the whole signer list by FROST's binding factors,
// so a split view only makes the signature fail. This scheme has a different threshold: with
// degree-t sharings every presignature and signature takes exactly 2t+1 nodes, fixed when the
// presignature is made, and only t may be corrupt (an honest majority of the set), where k-of-n
// tolerates k-1. A presignature fixes its set for good, cheating is detected but not
// attributed, and because ECDSA's s is linear in the digest with no binding of the nonce to
// the message, the nodes must agree on the digest (the echo round) before they release shares.
// In exchange it needs no Paillier, no zero-knowledge proofs and no dealer, and costs a few
// scalar multiplications per node per presignature and microseconds per share.
//
// # Constant time
//
// Secrets (shares, polynomial coefficients, k_i, a_i, c_i, β_i, e_i) only meet bigmod's and
// nistec's constant-time operations. Variable-time code runs only on public values: Lagrange
// coefficients of public indices (memoised), the inverse of the opened w, rejection sampling
// of random scalars (a rejection reveals only that a discarded candidate was ≥ n),
// crypto/ecdsa.Verify of the combined signature, and the decoding of public messages.
package ecdsahm
