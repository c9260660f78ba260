// Package trust is tchsm's trust layer: identities, the cluster manifest (the root of trust),
// authenticated envelopes, dealer-signed key records and HPKE encryption of key shares.
//
// # Identities
//
// Every process (signing node, dealer, client) has an [Identity]: an Ed25519 signing key and an
// X25519 encryption key used with HPKE (RFC 9180, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
// AES-256-GCM, from the standard crypto/hpke). Its public part is a [Member] of the manifest.
//
// Private identity file (written 0600 with O_EXCL, refused on read when group/other can read it):
//
//	{"version":1, "id":"node1", "role":"node",
//	 "sign_seed":"<base64 32-byte Ed25519 seed>", "enc_key":"<base64 32-byte X25519 scalar>"}
//
// or, when written with a passphrase, the same JSON sealed under a key derived with Argon2id:
//
//	{"version":1, "id":"node1", "role":"node",
//	 "kdf":{"name":"argon2id","salt":"<b64>","time":2,"memory_kib":65536,"threads":2},
//	 "sealed":"<base64 nonce(24)||XChaCha20-Poly1305 ciphertext of the plain JSON>"}
//
// Identity's String, GoString, LogValue and MarshalJSON never reveal private keys.
//
// # Manifest
//
// The [Manifest] lists the cluster id, the threshold k and the public parts of every node
// (indices exactly 1..n, n <= 64), dealer and client. It is distributed out of band and is the
// only source of trusted parameters: who may send what ([Allowed]), which node holds which share
// index. Its JSON form is written by [Manifest.Save]; byte strings are standard base64. It
// changes only by an [Update] that the manifest held accepts ([Accept]: serial + 1, the held
// manifest's hash, k and n kept, signed by enough of its offline admins; update.go says why
// admins and not the nodes); [Trusted] holds a long-running process's manifest and moves it
// forward, on disk first.
//
// # Envelopes
//
// [Seal] wraps a body message in a tchsmpb.Envelope signed with Ed25519 over a domain-separated,
// length-prefixed encoding of every other envelope field (never over protobuf bytes, which are
// not canonical). [Opener.Open] checks, in order: size and decoding, version, cluster id, that
// the sender is in the manifest, the signature (or pair MAC, below), that the sender's role may send the body type,
// the time window (issued_at at most [DefaultSkew] in the future, deadline not passed, deadline
// minus issued_at at most the per-type maximum TTL), then that the message id was not seen
// before. Each failure wraps one sentinel error (ErrMalformed, ErrWrongCluster,
// ErrUnknownSender, ErrBadSignature, ErrUnauthorized, ErrExpired, ErrReplay,
// ErrUnsupportedVersion for an envelope version other than [EnvelopeVersion], and
// ErrUnsupportedBodyType, in an [*UnsupportedError], for an authentic envelope of a body type
// this release does not know, which the receiver answers rather than drops:
// docs/operations/upgrade.md); test with errors.Is.
//
// [Sealer.SealTo] authenticates a request to one member with an HMAC-SHA256 instead: the key is
// the pair key of sender and recipient (X25519 of their manifest encryption keys, then HKDF
// with the cluster id, both ids and both public keys), the tag covers the recipient's id and
// the same canonical encoding, and [Sealer.Reply] answers such a request the same way. Only an
// Opener made [WithIdentity] of the recipient accepts it, so a tag cannot be shown to a third
// member or reflected to its sender. This replaces four Ed25519 operations per signature
// share (a tenth of a millisecond each on the reference VM) with microseconds of hashing;
// everything a third party must verify (key records, share deliveries and their
// acknowledgements, deletions through durable queues) stays signed. See mac.go.
//
// The replay cache remembers (sender, message id) until the message's deadline plus the skew
// allowance, so a message can never be accepted twice by one Opener. It holds at most
// MaxReplayEntries ids; when full of unexpired ids it refuses new messages (ErrReplayCacheFull)
// rather than forget ids that could still be replayed.
//
// # Key records and shares
//
// [SignKeyRecord] and [VerifyKeyRecord] sign and check dealer-signed key records; the record
// carries its cluster id. [EncryptShare] and [DecryptShare] use HPKE in base mode with an info
// string binding the cluster id, key id and recipient id, so a ciphertext opens only for the
// node and key it was made for. Callers must still check that the decrypted share's index is
// the recipient's manifest index.
package trust
