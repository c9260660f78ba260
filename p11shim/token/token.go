// Package token is the pure-Go core of the tchsm PKCS#11 module: one slot holding one token
// whose private keys live, split into shares, in a tchsm signing cluster reached through
// backend.Backend. It keeps the PKCS#11 state machine — sessions, login, objects and handles,
// find/sign/verify/digest operations — and knows nothing of C: p11shim converts arguments,
// copies buffers and maps the sentinel errors of this package to CKR_* values.
//
// # Objects
//
// Every cluster key (Backend.Keys) appears as two token objects: a private key (CKO_PRIVATE_KEY,
// CKA_PRIVATE, sensitive, not extractable, sign only) and a public key (CKO_PUBLIC_KEY, verify
// only), of key type CKK_RSA for scheme.ShoupRSA keys, CKK_EC_EDWARDS for
// scheme.Ed25519FROST ones and CKK_EC for scheme.ECDSAP256HM ones (P-256; CKA_EC_PARAMS and
// CKA_EC_POINT on both objects; their mechanisms are offered only when the backend supports
// the algorithm, backend.Supports). An RSA private key also shows CKA_MODULUS, CKA_PUBLIC_EXPONENT and
// CKA_MODULUS_BITS because OpenDNSSEC reads them from the private key when it skips public keys;
// an Ed25519 private key shows CKA_EC_PARAMS, and its public key CKA_EC_PARAMS and CKA_EC_POINT
// (OpenDNSSEC reads the point from the public key object, which every process sees because it
// is a token object made from the cluster's key list). CKA_LABEL and CKA_ID are the Label and
// P11ID given at generation. Handles are allocated per key id on first sight
// and never reused while the Token lives. The key list is cached for config.PKCS11.KeyCacheTTL and
// fetched again by C_FindObjectsInit when older, or when a search finds nothing, so keys made by
// another process (ods-enforcerd generates, ods-signerd signs) show up. A public key generated
// with CKA_TOKEN=FALSE is a session object, gone when its session closes.
//
// # Concurrency
//
// Any number of goroutines may call a Token at once on different sessions. Calls on one session
// are serialised by a per-session mutex (PKCS#11 forbids concurrent use of a session; this only
// keeps a misbehaving caller safe). The token-wide mutex guards maps only and is never held
// across a backend call, a PIN check, or an RSA operation. Every backend call has a deadline
// from config.PKCS11 and is cancelled when its session or the Token closes.
//
// # Login
//
// Login state belongs to the token: C_Login on any session logs in all of them, as libhsm
// expects (its worker threads open sessions and check for CKS_RW_USER_FUNCTIONS without logging
// in). A second C_Login returns ErrUserAlreadyLoggedIn (CKR_USER_ALREADY_LOGGED_IN) as the
// specification says. Closing the last session logs out. Only the normal user exists; CKU_SO
// returns ErrUserTypeInvalid (no SO functions — C_InitToken, C_InitPIN — are supported).
//
// The PIN is checked by the signing nodes, not here (backend.PINBackend): C_Login proves it to
// them, and they refuse this client's signing and key generation requests without that login,
// count consecutive wrong PINs and lock the client at their limit until an admin unlocks it
// (tchsm pin unlock); CKR_PIN_LOCKED then, and CK_TOKEN_INFO shows CKF_USER_PIN_COUNT_LOW,
// FINAL_TRY and LOCKED from what the nodes said at the last login or C_SetPIN (the token does
// not ask them at every C_GetTokenInfo). C_SetPIN (read/write session) changes the PIN on the
// nodes. Listing and reading public objects needs no login. A client file with a
// user_pin_hash is still honoured when no node holds a PIN for the client (a cluster created
// before the nodes checked PINs); see the README's migration.
package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"sort"
	"sync"
	"time"

	"github.com/tchsm/tchsm/internal/backend"
	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/pin"
	"github.com/tchsm/tchsm/scheme"
)

// SlotID is the id of the only slot.
const SlotID uint = 1

// Limits.
const (
	MinKeyBits  = 1024
	MaxKeyBits  = 4096
	MinPINLen   = 4
	MaxPINLen   = 255
	maxSessions = 16384
)

// Token is the state of one PKCS#11 initialisation (C_Initialize … C_Finalize).
type Token struct {
	cfg     config.PKCS11 // defaults applied
	backend backend.Backend
	// ecdsa: the backend supports ECDSA P-256 keys (backend.Supports), so the EC mechanisms
	// are offered.
	ecdsa  bool
	log    *slog.Logger
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	mu          sync.Mutex
	closed      bool
	loggedIn    bool
	pinStatus   backend.PINStatus // what the nodes said at the last login or PIN change
	noNodePIN   bool              // the nodes said they hold no PIN for this client
	sessions    map[uint]*session
	nextSession uint
	nextObject  uint
	// handles of every key id seen, kept for the life of the Token so they are stable and
	// never reused.
	keyHandles map[string][2]uint // [private, public]
	byHandle   map[uint]objRef
	keys       map[string]*key // keys currently known to exist
	keysAt     time.Time       // start of the last successful fetch
	keysLoaded bool
	seq        uint64                 // counts local key additions and deletions
	changes    map[string]localChange // local changes not yet confirmed by a fetch
	refreshing *refreshCall
	orphans    map[uint]bool  // public handles of keys this Token deleted
	bg         sync.WaitGroup // background key list fetches
}

type localChange struct {
	seq     uint64
	deleted bool
}

type refreshCall struct {
	done    chan struct{}
	started time.Time
	err     error
}

// key is one cluster key with its decoded public key.
type key struct {
	info    backend.KeyInfo
	keyType uint              // CKK_RSA, CKK_EC_EDWARDS or CKK_EC
	pub     *rsa.PublicKey    // CKK_RSA only
	ed      ed25519.PublicKey // CKK_EC_EDWARDS only
	ec      *ecdsa.PublicKey  // CKK_EC only (P-256)
	size    int               // signature length in bytes: the modulus length, or 64
	spki    []byte            // DER SubjectPublicKeyInfo
	created bool              // a public key the caller created (C_CreateObject), not a cluster key
}

// public returns the key's public key as crypto/rsa, crypto/ed25519 or crypto/ecdsa has it.
func (k *key) public() crypto.PublicKey {
	switch k.keyType {
	case CKK_EC_EDWARDS:
		return k.ed
	case CKK_EC:
		return k.ec
	}
	return k.pub
}

// samePublic reports whether pub is k's public key (a key record seen again, unchanged).
func (k *key) samePublic(pub crypto.PublicKey) bool {
	eq, ok := k.public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(pub)
}

// objRef says what a handle names. Token objects name a key id; session objects carry a
// snapshot of their key and the session that owns them.
type objRef struct {
	keyID   string
	pub     bool
	session uint // owning session for session objects, 0 for token objects
	k       *key // session objects only
}

// object is a resolved handle.
type object struct {
	h     uint
	k     *key
	pub   bool
	token bool
}

// New returns a Token with the settings cfg (zero fields take their defaults) over backend.
// log may be nil (no logging). The Token owns backend and closes it in Close.
func New(cfg config.PKCS11, backend backend.Backend, log *slog.Logger) (*Token, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if backend == nil {
		return nil, fmt.Errorf("%w: nil backend", ErrArgumentsBad)
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Token{
		cfg: cfg, backend: backend, log: log, ctx: ctx, cancel: cancel,
		ecdsa:      supportsECDSA(backend),
		sessions:   map[uint]*session{},
		keyHandles: map[string][2]uint{},
		byHandle:   map[uint]objRef{},
		keys:       map[string]*key{},
		changes:    map[string]localChange{},
		orphans:    map[uint]bool{},
	}, nil
}

// Close ends every session, cancels calls in flight and closes the backend. Later calls
// return ErrClosed.
func (t *Token) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	sessions := t.sessions
	t.sessions = map[uint]*session{}
	t.loggedIn = false
	t.mu.Unlock()
	t.cancel()
	for _, s := range sessions {
		s.cancel()
	}
	t.bg.Wait()
	if err := t.backend.Close(); err != nil {
		return fmt.Errorf("token: closing backend: %w", err)
	}
	return nil
}

// Info describes the library (C_GetInfo) and the slot (C_GetSlotInfo).
type Info struct {
	Manufacturer string
	Description  string
	Version      [2]byte
}

// LibraryInfo returns the C_GetInfo fields.
func LibraryInfo() Info {
	return Info{Manufacturer: "tchsm", Description: "tchsm threshold PKCS#11", Version: [2]byte{0, 1}}
}

// SlotInfo returns the C_GetSlotInfo fields; flags are CKF_TOKEN_PRESENT.
func (t *Token) SlotInfo(slot uint) (Info, uint, error) {
	if err := t.check(); err != nil {
		return Info{}, 0, err
	}
	if slot != SlotID {
		return Info{}, 0, ErrSlotIDInvalid
	}
	return Info{Manufacturer: "tchsm", Description: "tchsm signing cluster", Version: [2]byte{0, 1}},
		CKF_TOKEN_PRESENT, nil
}

// TokenInfo holds the C_GetTokenInfo fields that vary; the rest are constants in p11shim.
type TokenInfo struct {
	Label, Manufacturer, Model, Serial string
	Flags                              uint
	SessionCount, RWSessionCount       uint
	MinPINLen, MaxPINLen               uint
	HardwareVersion, FirmwareVersion   [2]byte
}

// TokenInfo returns the C_GetTokenInfo fields.
func (t *Token) TokenInfo(slot uint) (TokenInfo, error) {
	if err := t.check(); err != nil {
		return TokenInfo{}, err
	}
	if slot != SlotID {
		return TokenInfo{}, ErrSlotIDInvalid
	}
	flags := CKF_RNG | CKF_LOGIN_REQUIRED | CKF_TOKEN_INITIALIZED
	t.mu.Lock()
	if !t.noNodePIN || t.cfg.UserPINHash != "" {
		flags |= CKF_USER_PIN_INITIALIZED
	}
	flags |= pinFlags(t.pinStatus)
	var n, rw uint
	for _, s := range t.sessions {
		n++
		if s.rw {
			rw++
		}
	}
	t.mu.Unlock()
	return TokenInfo{
		Label: t.cfg.TokenLabel, Manufacturer: "tchsm", Model: "threshold", Serial: t.cfg.Serial,
		Flags: flags, SessionCount: n, RWSessionCount: rw, MinPINLen: MinPINLen, MaxPINLen: MaxPINLen,
		HardwareVersion: [2]byte{0, 1}, FirmwareVersion: [2]byte{0, 1},
	}, nil
}

// Pad returns s space-padded (or truncated) to n bytes, as CK_UTF8CHAR fields require.
func Pad(s string, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = ' '
	}
	copy(b, s)
	return b
}

// MechanismInfo holds C_GetMechanismInfo fields.
type MechanismInfo struct {
	MinKeySize, MaxKeySize uint
	Flags                  uint
}

// Mechanisms returns the supported mechanisms in ascending order.
func (t *Token) Mechanisms(slot uint) ([]uint, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	if slot != SlotID {
		return nil, ErrSlotIDInvalid
	}
	return mechanismList(t.offers), nil
}

// Mechanism returns C_GetMechanismInfo for m.
func (t *Token) Mechanism(slot, m uint) (MechanismInfo, error) {
	if err := t.check(); err != nil {
		return MechanismInfo{}, err
	}
	if slot != SlotID {
		return MechanismInfo{}, ErrSlotIDInvalid
	}
	spec := lookupMechanism(m)
	if spec == nil || !t.offers(spec) {
		return MechanismInfo{}, ErrMechanismInvalid
	}
	return spec.info, nil
}

func (t *Token) check() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	return nil
}

// ---- sessions ----

type session struct {
	h      uint
	rw     bool
	ctx    context.Context // cancelled when the session closes
	cancel context.CancelFunc

	mu      sync.Mutex // held for the whole of every call on the session
	closed  bool
	sign    *signOp
	verify  *verifyOp
	digest  *digestOp
	find    []uint // remaining results of an active search; nil when none
	finding bool
}

// OpenSession opens a session on the slot (C_OpenSession).
func (t *Token) OpenSession(slot, flags uint) (uint, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return 0, ErrClosed
	}
	if slot != SlotID {
		return 0, ErrSlotIDInvalid
	}
	if flags&CKF_SERIAL_SESSION == 0 {
		return 0, ErrSessionParallelNotSupported
	}
	if len(t.sessions) >= maxSessions {
		return 0, ErrSessionCount
	}
	t.nextSession++
	ctx, cancel := context.WithCancel(t.ctx)
	s := &session{h: t.nextSession, rw: flags&CKF_RW_SESSION != 0, ctx: ctx, cancel: cancel}
	t.sessions[s.h] = s
	return s.h, nil
}

// acquire returns the session locked; the caller unlocks s.mu.
func (t *Token) acquire(h uint) (*session, error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, ErrClosed
	}
	s := t.sessions[h]
	t.mu.Unlock()
	if s == nil {
		return nil, ErrSessionHandleInvalid
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrSessionHandleInvalid
	}
	return s, nil
}

// CloseSession closes one session (C_CloseSession). Its session objects are destroyed; a call in
// flight on it is cancelled. Closing the last session logs the user out.
func (t *Token) CloseSession(h uint) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return ErrClosed
	}
	s := t.sessions[h]
	if s == nil {
		t.mu.Unlock()
		return ErrSessionHandleInvalid
	}
	t.closeLocked(s)
	t.mu.Unlock()
	t.finishClose(s)
	return nil
}

// CloseAllSessions closes every session of the slot (C_CloseAllSessions).
func (t *Token) CloseAllSessions(slot uint) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return ErrClosed
	}
	if slot != SlotID {
		t.mu.Unlock()
		return ErrSlotIDInvalid
	}
	var all []*session
	for _, s := range t.sessions {
		t.closeLocked(s)
		all = append(all, s)
	}
	t.mu.Unlock()
	for _, s := range all {
		t.finishClose(s)
	}
	return nil
}

// closeLocked unlinks s and its objects; t.mu is held.
func (t *Token) closeLocked(s *session) {
	delete(t.sessions, s.h)
	for h, ref := range t.byHandle {
		if ref.session == s.h {
			delete(t.byHandle, h)
		}
	}
	if len(t.sessions) == 0 && t.loggedIn {
		t.loggedIn = false
		t.backend.Logout()
	}
	s.cancel()
}

// finishClose waits for a call in flight on s (already cancelled) and clears it.
func (t *Token) finishClose(s *session) {
	s.mu.Lock()
	s.closed = true
	s.sign, s.verify, s.digest, s.find, s.finding = nil, nil, nil, nil, false
	s.mu.Unlock()
}

// SessionInfo holds C_GetSessionInfo fields.
type SessionInfo struct {
	SlotID, State, Flags uint
}

// SessionInfo returns C_GetSessionInfo for h.
func (t *Token) SessionInfo(h uint) (SessionInfo, error) {
	s, err := t.acquire(h)
	if err != nil {
		return SessionInfo{}, err
	}
	defer s.mu.Unlock()
	info := SessionInfo{SlotID: SlotID, Flags: CKF_SERIAL_SESSION}
	logged := t.isLoggedIn()
	switch {
	case s.rw && logged:
		info.State = CKS_RW_USER_FUNCTIONS
	case s.rw:
		info.State = CKS_RW_PUBLIC_SESSION
	case logged:
		info.State = CKS_RO_USER_FUNCTIONS
	default:
		info.State = CKS_RO_PUBLIC_SESSION
	}
	if s.rw {
		info.Flags |= CKF_RW_SESSION
	}
	return info, nil
}

func (t *Token) isLoggedIn() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.loggedIn
}

// pinFlags are the CK_TOKEN_INFO flags of the nodes' PIN counters: COUNT_LOW once a node
// counted a wrong PIN, FINAL_TRY when a node has one try left, LOCKED when too many nodes
// locked the client for k of them to accept a login.
func pinFlags(st backend.PINStatus) uint {
	switch {
	case !st.Known:
		return 0
	case st.Locked:
		return CKF_USER_PIN_LOCKED
	case st.Remaining == 1:
		return CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY
	case st.Failures > 0:
		return CKF_USER_PIN_COUNT_LOW
	}
	return 0
}

// notePIN keeps what the nodes said of the PIN.
func (t *Token) notePIN(st backend.PINStatus, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.noNodePIN = errors.Is(err, backend.ErrNoPINVerifier)
	if st.Known {
		t.pinStatus = st
	}
}

// Login logs the user in on every session (C_Login). The PIN goes to the signing nodes
// (backend.PINBackend.Login), which hold its verifier and the failure counter; the token is
// logged in once at least k of them accept it. Only when no node holds a PIN for this client
// (a cluster not migrated yet) is it checked against the configuration's user_pin_hash, as
// before (a hash that a stolen client file lets anyone test offline: see the README).
func (t *Token) Login(h, userType uint, pinBytes []byte) error {
	s, err := t.acquire(h)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	switch userType {
	case CKU_USER:
	case CKU_SO:
		return fmt.Errorf("%w: the security officer is not supported", ErrUserTypeInvalid)
	case CKU_CONTEXT_SPECIFIC:
		return fmt.Errorf("%w: no key needs context-specific login", ErrOperationNotInitialized)
	default:
		return ErrUserTypeInvalid
	}
	if t.isLoggedIn() {
		return ErrUserAlreadyLoggedIn
	}
	if len(pinBytes) > pin.MaxPINLen {
		return ErrPINIncorrect
	}
	ctx, cancel := context.WithTimeout(s.ctx, time.Duration(t.cfg.RequestTimeout))
	defer cancel()
	st, err := t.backend.Login(ctx, pinBytes)
	t.notePIN(st, err)
	switch {
	case err == nil:
		if t.cfg.UserPINHash != "" {
			t.log.Warn("C_Login: the nodes check the PIN; user_pin_hash in the client file is no longer used: remove it", "session", h)
		}
	case errors.Is(err, backend.ErrNoPINVerifier):
		if err := t.legacyLogin(h, pinBytes); err != nil {
			return err
		}
	case errors.Is(err, backend.ErrPINIncorrect):
		t.log.Warn("C_Login: incorrect PIN", "session", h, "failures", st.Failures, "tries_left", st.Remaining)
		return fmt.Errorf("%w: %w", ErrPINIncorrect, err)
	case errors.Is(err, backend.ErrPINLocked):
		t.log.Warn("C_Login: the PIN is locked on the nodes; an admin client unlocks it (tchsm pin unlock)", "session", h)
		return fmt.Errorf("%w: %w", ErrPINLocked, err)
	default:
		return backendErr("C_Login", err, ErrDeviceError, ErrArgumentsBad)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.loggedIn {
		return ErrUserAlreadyLoggedIn
	}
	t.loggedIn = true
	t.log.Info("C_Login: user logged in", "session", h)
	return nil
}

// legacyLogin checks the PIN against user_pin_hash, for a cluster whose nodes hold no PIN.
func (t *Token) legacyLogin(h uint, pinBytes []byte) error {
	if t.cfg.UserPINHash == "" {
		return fmt.Errorf("%w: no node holds a PIN for this client (tchsm pin set)", ErrUserPINNotInitialized)
	}
	ok, err := pin.Verify(t.cfg.UserPINHash, string(pinBytes))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDeviceError, err)
	}
	if !ok {
		t.log.Warn("C_Login: incorrect PIN (user_pin_hash: the nodes hold no PIN for this client yet)", "session", h)
		return ErrPINIncorrect
	}
	t.log.Warn("C_Login: PIN checked against user_pin_hash, which a copy of the client file lets anyone test offline; install it on the nodes with tchsm pin set", "session", h)
	return nil
}

// SetPIN changes the user PIN on the signing nodes (C_SetPIN, in a read/write session). When no
// node holds a PIN for this client yet and the old PIN matches user_pin_hash, it installs the
// new one on the nodes (the migration of `tchsm pin set`).
func (t *Token) SetPIN(h uint, oldPIN, newPIN []byte) error {
	s, err := t.acquire(h)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if !s.rw {
		return ErrSessionReadOnly
	}
	if len(newPIN) < MinPINLen || len(newPIN) > MaxPINLen {
		return ErrPINLenRange
	}
	if len(oldPIN) > pin.MaxPINLen {
		return ErrPINIncorrect
	}
	ctx, cancel := context.WithTimeout(s.ctx, time.Duration(t.cfg.RequestTimeout))
	defer cancel()
	st, err := t.backend.ChangePIN(ctx, oldPIN, newPIN)
	if errors.Is(err, backend.ErrNoPINVerifier) {
		if lerr := t.legacyLogin(h, oldPIN); lerr != nil {
			return lerr
		}
		st, err = t.backend.ChangePIN(ctx, nil, newPIN)
	}
	t.notePIN(st, err)
	switch {
	case err == nil:
		t.log.Info("C_SetPIN: PIN changed on the nodes", "session", h)
		return nil
	case errors.Is(err, backend.ErrPINIncorrect):
		return fmt.Errorf("%w: %w", ErrPINIncorrect, err)
	case errors.Is(err, backend.ErrPINLocked):
		return fmt.Errorf("%w: %w", ErrPINLocked, err)
	}
	return backendErr("C_SetPIN", err, ErrDeviceError, ErrArgumentsBad)
}

// Logout logs the user out of every session (C_Logout).
func (t *Token) Logout(h uint) error {
	s, err := t.acquire(h)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.loggedIn {
		return ErrUserNotLoggedIn
	}
	t.loggedIn = false
	t.backend.Logout()
	// Handles of private objects end with the login (PKCS#11 v2.40 section 5.5, C_Logout):
	// after the next C_Login the keys have new private-key handles; public ones stay.
	for id, hs := range t.keyHandles {
		delete(t.byHandle, hs[0])
		t.keyHandles[id] = [2]uint{0, hs[1]}
	}
	return nil
}

// GenerateRandom returns n random bytes from crypto/rand (C_GenerateRandom).
func (t *Token) GenerateRandom(h uint, n int) ([]byte, error) {
	s, err := t.acquire(h)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	if n < 0 {
		return nil, ErrArgumentsBad
	}
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDeviceError, err)
	}
	return b, nil
}

// SeedRandom refuses seeding (C_SeedRandom): the generator is the operating system's.
func (t *Token) SeedRandom(h uint) error {
	s, err := t.acquire(h)
	if err != nil {
		return err
	}
	s.mu.Unlock()
	return ErrRandomSeedNotSupported
}

// ---- keys and objects ----

// newKey checks a key record and decodes its public key: an *rsa.PublicKey for
// scheme.ShoupRSA, an ed25519.PublicKey of 32 bytes, Bits 256, for scheme.Ed25519FROST, an
// *ecdsa.PublicKey on P-256, Bits 256, for scheme.ECDSAP256HM.
func newKey(info backend.KeyInfo) (*key, error) {
	if info.Algorithm == scheme.Ed25519FROST {
		return newEd25519Key(info)
	}
	if info.Algorithm == scheme.ECDSAP256HM {
		return newECKey(info)
	}
	if info.Algorithm != scheme.ShoupRSA && info.Algorithm != scheme.Unspecified {
		return nil, fmt.Errorf("token: key record of algorithm %v, which the token does not know", info.Algorithm)
	}
	rp, ok := info.Public.(*rsa.PublicKey)
	if !ok || rp.N == nil || rp.N.Sign() <= 0 || rp.E < 3 || rp.E&1 == 0 {
		return nil, fmt.Errorf("token: %v key record without a valid RSA public key", info.Algorithm)
	}
	if info.Bits != rp.N.BitLen() {
		return nil, fmt.Errorf("token: key record says %d bits, modulus has %d", info.Bits, rp.N.BitLen())
	}
	pub := &rsa.PublicKey{N: new(big.Int).Set(rp.N), E: rp.E}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("token: encoding public key: %w", err)
	}
	return &key{info: info, keyType: CKK_RSA, pub: pub, size: (pub.N.BitLen() + 7) / 8, spki: spki}, nil
}

func newEd25519Key(info backend.KeyInfo) (*key, error) {
	ep, ok := info.Public.(ed25519.PublicKey)
	if !ok || len(ep) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("token: %v key record without a 32-byte Ed25519 public key", info.Algorithm)
	}
	if info.Bits != ed25519Bits {
		return nil, fmt.Errorf("token: Ed25519 key record says %d bits", info.Bits)
	}
	pub := append(ed25519.PublicKey{}, ep...)
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("token: encoding public key: %w", err)
	}
	return &key{info: info, keyType: CKK_EC_EDWARDS, ed: pub, size: ed25519.SignatureSize, spki: spki}, nil
}

// supportsECDSA reports whether b supports ECDSA P-256 keys (New's parameter hides the package).
func supportsECDSA(b backend.Backend) bool { return backend.Supports(b, scheme.ECDSAP256HM) }

func newECKey(info backend.KeyInfo) (*key, error) {
	ep, ok := info.Public.(*ecdsa.PublicKey)
	if !ok || ep == nil || ep.Curve != elliptic.P256() {
		return nil, fmt.Errorf("token: %v key record without a P-256 public key", info.Algorithm)
	}
	if info.Bits != ecBits {
		return nil, fmt.Errorf("token: ECDSA P-256 key record says %d bits", info.Bits)
	}
	point, err := ep.Bytes() // uncompressed, 65 bytes; fails for a point not on the curve
	if err != nil {
		return nil, fmt.Errorf("token: ECDSA P-256 key record: %w", err)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		return nil, fmt.Errorf("token: ECDSA P-256 key record: %w", err)
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("token: encoding public key: %w", err)
	}
	return &key{info: info, keyType: CKK_EC, ec: pub, size: 2 * ecScalarSize, spki: spki}, nil
}

// handlesLocked returns the handles of key id, allocating them on first sight, and a new
// private-key handle after a logout ended the previous one.
func (t *Token) handlesLocked(id string) [2]uint {
	hs, ok := t.keyHandles[id]
	if !ok {
		hs = [2]uint{t.nextObject + 1, t.nextObject + 2}
		t.nextObject += 2
		t.keyHandles[id] = hs
		t.byHandle[hs[0]] = objRef{keyID: id}
		t.byHandle[hs[1]] = objRef{keyID: id, pub: true}
	}
	if hs[0] == 0 {
		t.nextObject++
		hs[0] = t.nextObject
		t.keyHandles[id] = hs
		t.byHandle[hs[0]] = objRef{keyID: id}
	}
	return hs
}

// refreshKeys makes sure a fetch of the key list that started at or after notBefore has
// completed. Concurrent callers share fetches.
func (t *Token) refreshKeys(ctx context.Context, notBefore time.Time) error {
	for {
		t.mu.Lock()
		if t.keysLoaded && !t.keysAt.Before(notBefore) {
			t.mu.Unlock()
			return nil
		}
		if c := t.refreshing; c != nil {
			t.mu.Unlock()
			select {
			case <-c.done:
			case <-ctx.Done():
				return ctx.Err()
			}
			if !c.started.Before(notBefore) {
				return c.err
			}
			continue
		}
		c := &refreshCall{done: make(chan struct{}), started: time.Now()}
		t.refreshing = c
		start := t.seq
		t.mu.Unlock()

		rctx, cancel := context.WithTimeout(t.ctx, time.Duration(t.cfg.ListTimeout))
		infos, err := t.backend.Keys(rctx)
		cancel()

		t.mu.Lock()
		t.refreshing = nil
		if err == nil {
			t.applyKeysLocked(infos, start, c.started)
		}
		t.mu.Unlock()
		c.err = err
		close(c.done)
		return err
	}
}

// refreshAsync starts a background fetch of the key list unless one is running.
func (t *Token) refreshAsync(notBefore time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.refreshing != nil {
		return
	}
	t.bg.Add(1)
	go func() {
		defer t.bg.Done()
		if err := t.refreshKeys(t.ctx, notBefore); err != nil {
			t.log.Warn("listing cluster keys failed", "err", err)
		}
	}()
}

// applyKeysLocked installs a fetched key list, keeping local changes made after the fetch began.
func (t *Token) applyKeysLocked(infos []backend.KeyInfo, start uint64, started time.Time) {
	keys := make(map[string]*key, len(infos))
	for _, info := range infos {
		if old, ok := t.keys[info.ID]; ok && old.samePublic(info.Public) {
			keys[info.ID] = old
			continue
		}
		k, err := newKey(info)
		if err != nil {
			t.log.Warn("ignoring cluster key", "key", info.ID, "err", err)
			continue
		}
		keys[info.ID] = k
	}
	for id, ch := range t.changes {
		if ch.seq <= start {
			delete(t.changes, id)
			continue
		}
		if ch.deleted {
			delete(keys, id)
		} else if k := t.keys[id]; k != nil {
			keys[id] = k
		}
	}
	for id := range keys {
		t.handlesLocked(id)
	}
	t.keys = keys
	t.keysAt = started
	t.keysLoaded = true
}

// ensureKeys makes sure the key list is at most maxAge old, or, with maxAge 0, fetched after
// now. A failed fetch falls back to the previous list if there is one.
func (t *Token) ensureKeys(ctx context.Context, maxAge time.Duration) error {
	now := time.Now()
	t.mu.Lock()
	fresh := maxAge > 0 && t.keysLoaded && now.Sub(t.keysAt) < maxAge
	loaded := t.keysLoaded
	t.mu.Unlock()
	if fresh {
		return nil
	}
	err := t.refreshKeys(ctx, now)
	if err == nil {
		return nil
	}
	if loaded && !errors.Is(err, context.Canceled) {
		t.log.Warn("listing cluster keys failed; using the previous list", "err", err)
		return nil
	}
	return backendErr("listing keys", err, ErrDeviceError, ErrDeviceError)
}

// resolve looks a handle up. Private objects are invisible unless the user is logged in.
func (t *Token) resolve(h uint) (object, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ref, ok := t.byHandle[h]
	if !ok {
		return object{}, ErrObjectHandleInvalid
	}
	if ref.session != 0 {
		return object{h: h, k: ref.k, pub: true}, nil
	}
	k := t.keys[ref.keyID]
	if k == nil {
		return object{}, ErrObjectHandleInvalid
	}
	if !ref.pub && !t.loggedIn {
		return object{}, fmt.Errorf("%w: private object, user not logged in", ErrObjectHandleInvalid)
	}
	return object{h: h, k: k, pub: ref.pub, token: true}, nil
}

// Attribute is one template entry: an attribute type and its value bytes.
type Attribute struct {
	Type  uint
	Value []byte
}

// attr returns the value of attribute typ of o, ErrAttributeSensitive or ErrAttributeTypeInvalid.
// The attributes of one key type are invalid on objects of the other (CKA_MODULUS on an
// Ed25519 key, CKA_EC_POINT on an RSA key).
func (o object) attr(typ uint) ([]byte, error) {
	k := o.k
	switch typ {
	case CKA_CLASS:
		if o.pub {
			return EncodeULong(CKO_PUBLIC_KEY), nil
		}
		return EncodeULong(CKO_PRIVATE_KEY), nil
	case CKA_TOKEN:
		return EncodeBool(o.token), nil
	case CKA_PRIVATE:
		return EncodeBool(!o.pub), nil
	case CKA_LABEL:
		return []byte(k.info.Label), nil
	case CKA_MODIFIABLE, CKA_COPYABLE, CKA_DERIVE:
		return EncodeBool(false), nil
	case CKA_DESTROYABLE:
		return EncodeBool(true), nil
	case CKA_LOCAL:
		return EncodeBool(!k.created), nil
	case CKA_KEY_TYPE:
		return EncodeULong(k.keyType), nil
	case CKA_ID:
		return append([]byte{}, k.info.P11ID...), nil
	case CKA_START_DATE, CKA_END_DATE, CKA_SUBJECT:
		return []byte{}, nil
	case CKA_KEY_GEN_MECHANISM:
		if k.created {
			return nil, ErrAttributeTypeInvalid // CK_UNAVAILABLE_INFORMATION
		}
		return EncodeULong(keyGenMechanism(k.keyType)), nil
	case CKA_ALLOWED_MECHANISMS:
		return allowedMechanisms(k.keyType), nil
	case CKA_PUBLIC_KEY_INFO:
		return append([]byte{}, k.spki...), nil
	}
	var v []byte
	var err error
	switch k.keyType {
	case CKK_EC_EDWARDS:
		v, err = o.edAttr(typ)
	case CKK_EC:
		v, err = o.ecAttr(typ)
	default:
		v, err = o.rsaAttr(typ)
	}
	if !errors.Is(err, ErrAttributeTypeInvalid) {
		return v, err
	}
	if o.pub {
		switch typ {
		case CKA_ENCRYPT, CKA_WRAP, CKA_VERIFY_RECOVER, CKA_TRUSTED:
			return EncodeBool(false), nil
		case CKA_VERIFY:
			return EncodeBool(true), nil
		}
		return nil, ErrAttributeTypeInvalid
	}
	switch typ {
	case CKA_SENSITIVE, CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE, CKA_SIGN:
		return EncodeBool(true), nil
	case CKA_DECRYPT, CKA_SIGN_RECOVER, CKA_UNWRAP, CKA_EXTRACTABLE, CKA_WRAP_WITH_TRUSTED,
		CKA_ALWAYS_AUTHENTICATE:
		return EncodeBool(false), nil
	case CKA_VALUE:
		return nil, ErrAttributeSensitive
	}
	return nil, ErrAttributeTypeInvalid
}

// rsaAttr returns the attributes only RSA keys have.
func (o object) rsaAttr(typ uint) ([]byte, error) {
	k := o.k
	switch typ {
	case CKA_MODULUS:
		return k.pub.N.Bytes(), nil
	case CKA_MODULUS_BITS:
		return EncodeULong(uint(k.pub.N.BitLen())), nil
	case CKA_PUBLIC_EXPONENT:
		return big.NewInt(int64(k.pub.E)).Bytes(), nil
	case CKA_PRIVATE_EXPONENT, CKA_PRIME_1, CKA_PRIME_2, CKA_EXPONENT_1, CKA_EXPONENT_2, CKA_COEFFICIENT:
		if !o.pub {
			return nil, ErrAttributeSensitive
		}
	}
	return nil, ErrAttributeTypeInvalid
}

// edAttr returns the attributes only Ed25519 keys have (PKCS#11 3.0 section 2.3.6 and 2.3.7):
// CKA_EC_PARAMS on both objects, always as the DER OID of RFC 8410 whatever form the
// generating template used; CKA_EC_POINT, the DER OCTET STRING of RFC 8032's 32-byte
// encoding, on the public key only, as SoftHSM2 does (OpenDNSSEC's libhsm wants exactly this).
func (o object) edAttr(typ uint) ([]byte, error) {
	switch typ {
	case CKA_EC_PARAMS:
		return append([]byte{}, ed25519OID...), nil
	case CKA_EC_POINT:
		if o.pub {
			return append([]byte{0x04, ed25519.PublicKeySize}, o.k.ed...), nil
		}
	}
	return nil, ErrAttributeTypeInvalid
}

// ecAttr returns the attributes only ECDSA P-256 keys have (v2.40 sections 2.3.3 and 2.3.4):
// CKA_EC_PARAMS, the DER OID of prime256v1, and CKA_EC_POINT, the DER OCTET STRING of the
// 65-byte uncompressed point (04 41 04 x y), on both objects (the point is public; callers
// that skip public key objects read it from the private one; CKA_VALUE stays sensitive).
func (o object) ecAttr(typ uint) ([]byte, error) {
	switch typ {
	case CKA_EC_PARAMS:
		return append([]byte{}, p256OID...), nil
	case CKA_EC_POINT:
		point, err := o.k.ec.Bytes()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrDeviceError, err)
		}
		return append([]byte{0x04, byte(len(point))}, point...), nil
	}
	return nil, ErrAttributeTypeInvalid
}

// matches reports whether o has every attribute of tmpl with an equal value. An attribute o
// lacks (or hides) matches nothing.
func (o object) matches(tmpl []Attribute) bool {
	for _, a := range tmpl {
		v, err := o.attr(a.Type)
		if err != nil {
			return false
		}
		if a.Type == CKA_EC_PARAMS {
			// Any encoding of the key's curve finds it.
			if c, err := parseCurve(a.Value); err != nil || c != curveOf(o.k.keyType) {
				return false
			}
			continue
		}
		if len(v) == 1 && len(a.Value) == 1 && isBoolAttr(a.Type) {
			if (v[0] != 0) != (a.Value[0] != 0) {
				return false
			}
			continue
		}
		if string(v) != string(a.Value) {
			return false
		}
	}
	return true
}

func isBoolAttr(t uint) bool {
	switch t {
	case CKA_TOKEN, CKA_PRIVATE, CKA_MODIFIABLE, CKA_COPYABLE, CKA_DESTROYABLE, CKA_DERIVE, CKA_LOCAL,
		CKA_ENCRYPT, CKA_WRAP, CKA_VERIFY_RECOVER, CKA_TRUSTED, CKA_VERIFY, CKA_SENSITIVE,
		CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE, CKA_SIGN, CKA_DECRYPT, CKA_SIGN_RECOVER,
		CKA_UNWRAP, CKA_EXTRACTABLE, CKA_WRAP_WITH_TRUSTED, CKA_ALWAYS_AUTHENTICATE:
		return true
	}
	return false
}

// visibleLocked lists every object visible now, in handle order.
func (t *Token) visibleLocked() []object {
	var out []object
	for h, ref := range t.byHandle {
		if ref.session != 0 {
			out = append(out, object{h: h, k: ref.k, pub: true})
			continue
		}
		k := t.keys[ref.keyID]
		if k == nil || (!ref.pub && !t.loggedIn) {
			continue
		}
		out = append(out, object{h: h, k: k, pub: ref.pub, token: true})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].h < out[j].h })
	return out
}

func (t *Token) search(tmpl []Attribute) []uint {
	t.mu.Lock()
	defer t.mu.Unlock()
	var hs []uint
	for _, o := range t.visibleLocked() {
		if o.matches(tmpl) {
			hs = append(hs, o.h)
		}
	}
	return hs
}

// FindObjectsInit starts a search (C_FindObjectsInit). The key list is fetched again when it is
// older than config.PKCS11.KeyCacheTTL, or when the search finds nothing.
func (t *Token) FindObjectsInit(h uint, tmpl []Attribute) error {
	s, err := t.acquire(h)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if s.finding {
		return ErrOperationActive
	}
	started := time.Now()
	t.mu.Lock()
	loaded, stale := t.keysLoaded, started.Sub(t.keysAt) >= time.Duration(t.cfg.KeyCacheTTL)
	t.mu.Unlock()
	if !loaded {
		if err := t.ensureKeys(s.ctx, 0); err != nil {
			return err
		}
	}
	hs := t.search(tmpl)
	switch {
	case len(hs) == 0:
		// Maybe another process made the key since the list was fetched: fetch again, unless
		// the list was fetched during this call.
		if err := t.refreshKeys(s.ctx, started); err != nil {
			t.log.Warn("listing cluster keys failed", "err", err)
		}
		hs = t.search(tmpl)
	case stale:
		// Serve the cached list and fetch a new one in the background: a node that is down
		// makes a listing last list_timeout, and a search that found its key need not wait.
		t.refreshAsync(started)
	}
	s.find, s.finding = hs, true
	return nil
}

// FindObjects returns up to max handles of the active search (C_FindObjects).
func (t *Token) FindObjects(h uint, max int) ([]uint, error) {
	s, err := t.acquire(h)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	if !s.finding {
		return nil, ErrOperationNotInitialized
	}
	if max < 0 {
		return nil, ErrArgumentsBad
	}
	n := min(max, len(s.find))
	out := append([]uint(nil), s.find[:n]...)
	s.find = s.find[n:]
	return out, nil
}

// FindObjectsFinal ends the search (C_FindObjectsFinal).
func (t *Token) FindObjectsFinal(h uint) error {
	s, err := t.acquire(h)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if !s.finding {
		return ErrOperationNotInitialized
	}
	s.find, s.finding = nil, false
	return nil
}

// AttrSlot is one entry of a C_GetAttributeValue template. The caller sets Type, HasBuf (pValue
// != NULL) and BufLen (ulValueLen); GetAttributeValue sets Len (the new ulValueLen: the value's
// length, or Unavailable) and Value (the bytes to copy into pValue, only when they fit).
type AttrSlot struct {
	Type   uint
	HasBuf bool
	BufLen uint
	Value  []byte
	Len    uint
}

// GetAttributeValue fills slots following the PKCS#11 rules: a length query for an entry
// without a buffer, CK_UNAVAILABLE_INFORMATION plus ErrAttributeSensitive,
// ErrAttributeTypeInvalid or ErrBufferTooSmall for entries that cannot be returned (every other
// entry is still processed).
func (t *Token) GetAttributeValue(h, oh uint, slots []AttrSlot) error {
	s, err := t.acquire(h)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	o, err := t.resolve(oh)
	if err != nil {
		return err
	}
	var rv error
	for i := range slots {
		sl := &slots[i]
		sl.Value = nil
		v, err := o.attr(sl.Type)
		switch {
		case err != nil:
			sl.Len, rv = Unavailable, err
		case !sl.HasBuf:
			sl.Len = uint(len(v))
		case sl.BufLen < uint(len(v)):
			sl.Len, rv = Unavailable, ErrBufferTooSmall
		default:
			sl.Value, sl.Len = v, uint(len(v))
		}
	}
	return rv
}

// SetAttributeValue refuses every change (C_SetAttributeValue): cluster key records are signed
// by the dealer and cannot be modified.
func (t *Token) SetAttributeValue(h, oh uint, tmpl []Attribute) error {
	s, err := t.acquire(h)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, err := t.resolve(oh); err != nil {
		return err
	}
	return ErrActionProhibited
}

// ObjectSize returns Unavailable for a valid handle (C_GetObjectSize).
func (t *Token) ObjectSize(h, oh uint) (uint, error) {
	s, err := t.acquire(h)
	if err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	if _, err := t.resolve(oh); err != nil {
		return 0, err
	}
	return Unavailable, nil
}

// DestroyObject destroys an object (C_DestroyObject). A private key deletes the cluster key (and
// with it the token public key object); a session public key only disappears from the session.
// A token public key cannot be destroyed on its own (ErrActionProhibited), except after its
// private key was destroyed here, when it is already gone and destroying it succeeds (libhsm
// destroys the private key, then the public key).
func (t *Token) DestroyObject(h, oh uint) error {
	s, err := t.acquire(h)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	t.mu.Lock()
	ref, ok := t.byHandle[oh]
	if ok && ref.session != 0 {
		delete(t.byHandle, oh)
		t.mu.Unlock()
		return nil
	}
	if t.orphans[oh] {
		delete(t.orphans, oh)
		delete(t.byHandle, oh)
		t.mu.Unlock()
		return nil
	}
	t.mu.Unlock()
	o, err := t.resolve(oh)
	if err != nil {
		return err
	}
	if o.pub {
		return fmt.Errorf("%w: a cluster public key goes with its private key", ErrActionProhibited)
	}
	if !s.rw {
		return ErrSessionReadOnly
	}
	ctx, cancel := context.WithTimeout(s.ctx, time.Duration(t.cfg.RequestTimeout))
	defer cancel()
	until, err := t.backend.DeleteKey(ctx, o.k.info.ID)
	if err != nil && !errors.Is(err, backend.ErrKeyNotFound) {
		return backendErr("deleting key", err, ErrObjectHandleInvalid, ErrArgumentsBad)
	}
	t.mu.Lock()
	id := o.k.info.ID
	delete(t.keys, id)
	t.seq++
	t.changes[id] = localChange{seq: t.seq, deleted: true}
	hs := t.keyHandles[id]
	delete(t.byHandle, hs[0])
	t.orphans[hs[1]] = true
	t.mu.Unlock()
	if err != nil {
		return backendErr("deleting key", err, ErrObjectHandleInvalid, ErrArgumentsBad)
	}
	if until.IsZero() {
		t.log.Info("key deleted", "key", id)
	} else {
		// PKCS#11 has no way to say this to the caller: the log says it.
		t.log.Info("key deleted; an admin can restore it with `tchsm keys restore` until the date given", "key", id,
			"recoverable_until", until.UTC().Format(time.RFC3339))
	}
	return nil
}
