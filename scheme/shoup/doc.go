// Package shoup implements Shoup's threshold RSA signatures (V. Shoup, "Practical Threshold
// Signatures", EUROCRYPT 2000) for PKCS#1 v1.5 signing, as tchsm's dealer, nodes and clients use
// them.
//
// A dealer generates N = pq from safe primes p = 2p'+1, q = 2q'+1 (keygen.GenerateKey, in package
// scheme/shoup/keygen so that signers do not link the search), and deals d, the
// inverse of e modulo m = p'q', as points s_i = f(i) of a random polynomial of degree k-1 over Z_m
// (Deal). Node i turns a message representative x into the share x_i = x^(2Δs_i) mod N, Δ = n!
// (SignShare), and, when asked, proves with a Fiat-Shamir proof over SHA-256 that x_i is correct
// with respect to its verification key v_i = v^(s_i) (Prove, VerifyShare). Any k shares combine
// into the ordinary RSA signature y = x^(1/e) mod N (Combine); the result is identical, byte for
// byte, to crypto/rsa.SignPKCS1v15 with the whole key, because e-th roots modulo N are unique.
//
// Optimistic combination: Combine verifies the result with e before returning it and returns
// ErrBadSignature when a share was wrong; only then does the caller ask for proofs (VerifyShare)
// to name the node that lied, or try other subsets (CombineAny). No function here ever returns an
// unverified signature.
//
// Why not cloudflare/circl's tss/rsa: it implements the bare protocol without verification keys
// or proofs, exponentiates the secret share with variable-time math/big, and searches safe primes
// without a sieve (minutes per 2048-bit key). Extending it would have replaced most of it, so the
// scheme is written here, small enough to review in one sitting.
//
// Side channels, stated precisely:
//   - The node's secret exponentiation x^(s_i) runs in constant time (SignShare, and the
//     prover's x^r, v^r in Prove) through internal/modexp: in the node binary OpenSSL's
//     BN_mod_exp_mont_consttime with BN_FLG_CONSTTIME on the exponent (package
//     internal/modexp/openssl, cgo, linked by the node only), elsewhere filippo.io/bigmod;
//     $TCHSM_MODEXP=bigmod|openssl forces one. OpenSSL was chosen because it is the speed to
//     match: bigmod is 1.37× slower at 2048 bits and 3.3× / 4.5× at 3072 / 4096 (no assembly
//     there), and assembly kernels like bigmod's 2048-bit one would still leave about 1.3;
//     the share is now 1.02 / 1.02 / 1.01 × OpenSSL (measurements and reasoning:
//     BENCHMARKS.md). The public part x^(2Δ) is computed first
//     with math/big, which is fine because x and Δ are public. The check of a share against
//     its v_i when a node loads it uses bigmod.
//   - The proof's response z = s_i·c + r is an integer product computed with math/big; its timing
//     depends on operand lengths only, and s_i is stored at a fixed length.
//   - Key generation and dealing (safe-prime search, d = e^-1 mod m, polynomial evaluation, v_i)
//     use variable-time math/big. They run once, on the dealer, offline from any request an
//     attacker can time.
//   - Combination and verification use only public values.
//
// Behind the scheme boundary (package scheme), Scheme is this package to the rest of tchsm: the
// key record keeps the fields of the releases before the boundary (bits, modulus,
// public_exponent, v, vk, safe_primes; algorithm 1, or 0 in older records), a share is s_i at
// the modulus length, a signature is one open round (any k of the n nodes; the payload T in,
// x_i out) and the audit round is Prove/VerifyShare, asked only after a failed combination.
//
// Trusted parameters: a node must use the PublicKey from its own dealer-signed key record, never
// a modulus, exponent, k or n taken from a request (see DESIGN.md: a wire-supplied modulus leaks
// the share). Validate checks a deserialised PublicKey for internal consistency.
package shoup
