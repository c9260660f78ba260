// Package frost implements FROST(Ed25519, SHA-512) of RFC 9591 (D. Connolly, C. Komlo,
// I. Goldberg, C. A. Wood, "The Flexible Round-Optimized Schnorr Threshold (FROST) Protocol for
// Two-Round Schnorr Signatures", June 2024), with keys made by Pedersen's distributed key
// generation (kyber v3.1.0's share/dkg/pedersen), behind tchsm's scheme boundary as
// scheme.Ed25519FROST. Its signatures are plain Ed25519 signatures (DNSSEC algorithm 15) that
// crypto/ed25519.Verify accepts; no machine ever holds the key, not even a dealer.
//
// # The protocol, and where it is
//
// group.go is the ciphersuite (section 6.1) on filippo.io/edwards25519: DecodeElement accepts
// only canonical encodings of points in the prime-order subgroup other than the identity
// (filippo.io/edwards25519 alone accepts non-canonical encodings, and kyber's edwards25519
// checks nothing), DecodeScalar only scalars below L; H1..H5 with the context string
// "FROST-ED25519-SHA512-v1" (H2 without it, as RFC 8032 needs); nonce_generate from 32 random
// bytes and the secret share. frost.go is sections 4 and 5: commit, the commitment list's
// encoding, binding factors, group commitment, challenge, sign, verify_signature_share,
// aggregate. The RFC's Appendix E.1 vectors (testdata) pass byte for byte.
//
// # Commitments in advance, one signing round
//
// A node's Participant (one per key) answers a commit request with a batch of commitments
// (D_i, E_i), each under a random 64-bit nonce id, and keeps the nonces in memory only, for
// the requester that asked (scheme.Request.Requester, the authenticated client), at most
// Options.MaxOutstanding per requester (a batch beyond it evicts the oldest) and for
// Options.TTL. A restart loses them all. The client keeps a pool per node (scheme.Precommitter:
// CommitRequest, ParseCommitments), picks k nodes with unused commitments, and starts a session
// (NewSession) whose single request carries the message and the whole commitment list. Each
// signer validates the list (CheckList: k to n entries, identifiers strictly increasing in 1..n,
// every element checked), finds its own entry, takes that nonce out of its store (it is never
// usable again, whatever follows), checks the entry's D and E are the ones it handed out, signs,
// and wipes the nonce before the share z_i leaves. The payload encodings are in wire.go.
//
// The Coordinator has a fixed set (Open is false, Quorum is k): Finish aggregates and verifies
// with crypto/ed25519.Verify; on ErrBadSignature, Audit asks for nothing (ask is false) and
// Judge checks each z_i against the verification share Y_i of the key record, dropping and
// naming the liar. FinishAny is Finish: FROST's share check is sound, so when every share passes
// the aggregate verifies.
//
// # Hedging, retries and liars
//
// A session cannot grow: the commitment list fixes the set and the binding factors. So:
//   - A hedge (a signer slow or down) is a new session: fresh commitments, from a set without
//     the slow node (it may keep other members of the first set, with new commitments). The
//     first session may still finish if its last share arrives; the client takes whichever
//     signature verifies first and abandons the other.
//   - A commitment is used in one session only: once it went out in a request the client drops
//     it from its pool, whatever the outcome. The nonces of an abandoned session are burnt on
//     the nodes that answered, and expire on those that did not: never reused either way.
//   - A node that refuses a request with ErrUnknownNonce (scheme.ErrStale: expired, evicted, or it restarted) is
//     honest: the client drops that node's pool for the key, asks it for a new batch, and
//     retries the signature in a new session.
//   - A node named by Judge is excluded (the client's decision, as for RSA) and the signature is
//     retried in a new session without it.
//
// # Distributed key generation
//
// DKG (package scheme/frost/dkg, apart so that libtchsm.so does not link kyber's DKG) runs kyber's Pedersen DKG in four steps of scheme.KeyGeneration, with trusted
// parameters from the manifest (scheme.DKGParams: the session, i.e. the key id, this node's
// long-term DKG secret, every node's long-term public key; GenerateDKGKey makes one). Its
// messages are scheme.Message payloads (dkgwire.go): deals point to point, encrypted to their
// recipient's long-term key by kyber itself (the trust layer may add its own encryption);
// responses and justifications broadcast. Every message is signed by its sender's long-term key
// and bound to the session, so relayed messages can be neither forged nor replayed into another
// key generation. kyber's deal checks are completed here: a deal's degree must be k-1, its
// commitments must pass DecodeElement, and dealers kyber cannot complain about (a deal missing,
// undecryptable or equivocating) are excluded by signed, broadcast blames. The outcome is
// checked as a key record is (NewPublicKey) and every share against its verification share.
//
// # Side channels and memory
//
// Signing (z_i = d_i + e_i·rho_i + lambda_i·s_i·c) and the nonces' commitments use
// filippo.io/edwards25519's constant-time scalar arithmetic and fixed-base multiplication; only
// public values (commitments, verification shares, binding factors) meet variable-time
// multiplication. Erasure is best effort, as Go allows: stored nonces and shares are
// overwritten (Nonces.Wipe, SecretShare.Wipe), copies the compiler keeps in registers or on the
// stack are not. kyber's DKG holds its polynomial in its own types until the DistKeyGenerator is
// collected.
//
// # Encodings
//
// Key record (KeyRecord.params, algorithm 2, bits 256): EncodeParams. Secret share:
// SerializeScalar(s_i), 32 bytes (SecretShare.Bytes). Request and reply payloads: wire.go.
// DKG messages: scheme/frost/dkg/wire.go.
package frost
