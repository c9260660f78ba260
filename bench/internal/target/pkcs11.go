package target

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/miekg/pkcs11"
)

// PKCS11Config says how to reach a key in a PKCS#11 module.
type PKCS11Config struct {
	Name       string // target name shown in results
	Module     string // path of the PKCS#11 shared library
	TokenLabel string // CK_TOKEN_INFO label (without the space padding)
	PIN        string // user PIN
	Bits       int    // requested modulus size (RSA)
	// Ed25519 benchmarks an Ed25519 key instead of RSA: CKK_EC_EDWARDS, generated with
	// CKM_EC_EDWARDS_KEY_PAIR_GEN as OpenDNSSEC does for algorithm 15 (both objects on the
	// token), signed with CKM_EDDSA over the whole message. Bits is ignored.
	Ed25519 bool
	// KeyLabel is the CKA_LABEL of the benchmark key; default "tchsm-bench-rsa<Bits>" or
	// "tchsm-bench-ed25519". An existing private key with this label and size is reused;
	// otherwise one is generated.
	KeyLabel string
	// KeepKey keeps a key the harness generated; by default it is destroyed at Close.
	KeepKey bool
	// Env is set in the process environment before C_Initialize (the module reads it there,
	// e.g. SOFTHSM2_CONF or TCHSM_CONFIG) and restored at Close.
	Env map[string]string
}

// PKCS11 benchmarks a PKCS#11 module used the way OpenDNSSEC's libhsm uses it:
// C_Initialize(CKF_OS_LOCKING_OK), token found by label, one C_Login(CKU_USER) on the first
// session, one more RW session per worker (never logged in again: login state belongs to the
// token), and per signature C_SignInit(CKM_RSA_PKCS) + C_Sign of a SHA-256 DigestInfo.
// miekg/pkcs11's Sign asks for the length with a NULL buffer first, then signs (libhsm passes a
// 512-byte buffer at once); the extra call is a cheap length query.
type PKCS11 struct {
	cfg       PKCS11Config
	ctx       *pkcs11.Ctx
	slot      uint
	login     pkcs11.SessionHandle
	key       pkcs11.ObjectHandle
	pubObj    pkcs11.ObjectHandle // the Ed25519 public-key object, when generated here
	pub       crypto.PublicKey
	generated bool
	keyGen    time.Duration // how long C_GenerateKeyPair took, when the harness generated the key
	info      string
	savedEnv  map[string]*string

	mu       sync.Mutex
	sessions map[pkcs11.SessionHandle]bool
}

// OpenPKCS11 loads the module, logs in and finds or generates the key.
func OpenPKCS11(cfg PKCS11Config) (t *PKCS11, err error) {
	if cfg.Module == "" || cfg.TokenLabel == "" {
		return nil, fmt.Errorf("%w: %s: module path and token label are required", ErrBadConfig, cfg.Name)
	}
	if !cfg.Ed25519 && !ValidBits(cfg.Bits) {
		return nil, fmt.Errorf("%w: %s: %d bits", ErrBadConfig, cfg.Name, cfg.Bits)
	}
	if cfg.KeyLabel == "" {
		cfg.KeyLabel = fmt.Sprintf("tchsm-bench-rsa%d", cfg.Bits)
		if cfg.Ed25519 {
			cfg.KeyLabel = "tchsm-bench-ed25519"
		}
	}
	if _, err := os.Stat(cfg.Module); err != nil {
		return nil, fmt.Errorf("%w: %s: module: %w", ErrBadConfig, cfg.Name, err)
	}
	t = &PKCS11{cfg: cfg, savedEnv: map[string]*string{}, sessions: map[pkcs11.SessionHandle]bool{}}
	for k, v := range cfg.Env {
		if old, ok := os.LookupEnv(k); ok {
			t.savedEnv[k] = &old
		} else {
			t.savedEnv[k] = nil
		}
		os.Setenv(k, v)
	}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	t.ctx = pkcs11.New(cfg.Module)
	if t.ctx == nil {
		return t, fmt.Errorf("%w: %s: cannot load %s", ErrBadConfig, cfg.Name, cfg.Module)
	}
	if err := t.ctx.Initialize(); err != nil {
		t.ctx.Destroy()
		t.ctx = nil
		return t, fmt.Errorf("target: %s: C_Initialize: %w", cfg.Name, err)
	}
	if err := t.findSlot(); err != nil {
		return t, err
	}
	sh, err := t.openSession()
	if err != nil {
		return t, err
	}
	t.login = sh
	if err := t.ctx.Login(sh, pkcs11.CKU_USER, cfg.PIN); err != nil && !isRV(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
		return t, fmt.Errorf("target: %s: C_Login: %w", cfg.Name, err)
	}
	if err := t.findOrGenerateKey(); err != nil {
		return t, err
	}
	return t, nil
}

func isRV(err error, rv uint) bool {
	var e pkcs11.Error
	return errors.As(err, &e) && uint(e) == rv
}

func (t *PKCS11) findSlot() error {
	slots, err := t.ctx.GetSlotList(true)
	if err != nil {
		return fmt.Errorf("target: %s: C_GetSlotList: %w", t.cfg.Name, err)
	}
	var seen []string
	for _, s := range slots {
		ti, err := t.ctx.GetTokenInfo(s)
		if err != nil {
			continue
		}
		if ti.Label == t.cfg.TokenLabel {
			t.slot = s
			t.info = fmt.Sprintf("%s %s (token %q)", strings.TrimSpace(ti.ManufacturerID), strings.TrimSpace(ti.Model), ti.Label)
			if li, err := t.ctx.GetInfo(); err == nil {
				t.info = fmt.Sprintf("%s %s %d.%d, %s", strings.TrimSpace(li.ManufacturerID), strings.TrimSpace(li.LibraryDescription),
					li.LibraryVersion.Major, li.LibraryVersion.Minor, t.info)
			}
			return nil
		}
		seen = append(seen, fmt.Sprintf("%q", ti.Label))
	}
	return fmt.Errorf("%w: %s: no token labelled %q in %s (found %s)", ErrTokenMissing, t.cfg.Name, t.cfg.TokenLabel, t.cfg.Module, strings.Join(seen, ", "))
}

func (t *PKCS11) openSession() (pkcs11.SessionHandle, error) {
	sh, err := t.ctx.OpenSession(t.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return 0, fmt.Errorf("target: %s: C_OpenSession: %w", t.cfg.Name, err)
	}
	t.mu.Lock()
	t.sessions[sh] = true
	t.mu.Unlock()
	return sh, nil
}

func (t *PKCS11) closeSession(sh pkcs11.SessionHandle) error {
	t.mu.Lock()
	open := t.sessions[sh]
	delete(t.sessions, sh)
	t.mu.Unlock()
	if !open {
		return nil
	}
	return t.ctx.CloseSession(sh)
}

// readPublic reads CKA_MODULUS and CKA_PUBLIC_EXPONENT from the private key object, as libhsm
// does with <SkipPublicKey/>.
func (t *PKCS11) readPublic(h pkcs11.ObjectHandle) (*rsa.PublicKey, error) {
	attrs, err := t.ctx.GetAttributeValue(t.login, h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil),
		pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, nil),
	})
	if err != nil {
		return nil, fmt.Errorf("target: %s: C_GetAttributeValue: %w", t.cfg.Name, err)
	}
	var n, e *big.Int
	for _, a := range attrs {
		switch a.Type {
		case pkcs11.CKA_MODULUS:
			n = new(big.Int).SetBytes(a.Value)
		case pkcs11.CKA_PUBLIC_EXPONENT:
			e = new(big.Int).SetBytes(a.Value)
		}
	}
	if n == nil || e == nil || n.Sign() == 0 || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
		return nil, fmt.Errorf("target: %s: key has no usable modulus/exponent", t.cfg.Name)
	}
	return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
}

func (t *PKCS11) findOrGenerateKey() error {
	if t.cfg.Ed25519 {
		return t.findOrGenerateEd25519()
	}
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, t.cfg.KeyLabel),
	}
	if err := t.ctx.FindObjectsInit(t.login, tmpl); err != nil {
		return fmt.Errorf("target: %s: C_FindObjectsInit: %w", t.cfg.Name, err)
	}
	hs, _, err := t.ctx.FindObjects(t.login, 100)
	if ferr := t.ctx.FindObjectsFinal(t.login); err == nil {
		err = ferr
	}
	if err != nil {
		return fmt.Errorf("target: %s: C_FindObjects: %w", t.cfg.Name, err)
	}
	for _, h := range hs {
		pub, err := t.readPublic(h)
		if err != nil {
			continue
		}
		if pub.N.BitLen() == t.cfg.Bits {
			t.key, t.pub = h, pub
			return nil
		}
	}
	return t.generate()
}

// generate uses OpenDNSSEC's key-generation template (libhsm hsm_generate_rsa_key with
// <SkipPublicKey/>): CKA_ID is 16 bytes from C_GenerateRandom, the public key is a session
// object destroyed at once. The label is fixed so later runs find the key again.
func (t *PKCS11) generate() error {
	id, err := t.ctx.GenerateRandom(t.login, 16)
	if err != nil {
		return fmt.Errorf("target: %s: C_GenerateRandom: %w", t.cfg.Name, err)
	}
	pubT := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, t.cfg.KeyLabel),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, t.cfg.Bits),
		pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
	}
	privT := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, t.cfg.KeyLabel),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
	}
	start := time.Now()
	pubH, privH, err := t.ctx.GenerateKeyPair(t.login,
		[]*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)}, pubT, privT)
	if err != nil {
		return fmt.Errorf("target: %s: C_GenerateKeyPair(RSA-%d): %w", t.cfg.Name, t.cfg.Bits, err)
	}
	t.keyGen = time.Since(start)
	t.generated = true
	t.key = privH
	_ = t.ctx.DestroyObject(t.login, pubH)
	pub, err := t.readPublic(privH)
	if err != nil {
		return err
	}
	if pub.N.BitLen() != t.cfg.Bits {
		return fmt.Errorf("%w: %s: asked for %d bits, got %d", ErrKeySize, t.cfg.Name, t.cfg.Bits, pub.N.BitLen())
	}
	t.pub = pub
	return nil
}

// Name implements Target.
func (t *PKCS11) Name() string { return t.cfg.Name }

// Describe implements Target.
func (t *PKCS11) Describe() string {
	how := "existing key"
	if t.generated {
		how = "key generated by the harness"
	}
	if t.cfg.Ed25519 {
		if t.generated {
			how = fmt.Sprintf("key generated by the harness in %v", t.keyGen.Round(time.Millisecond))
		}
		return fmt.Sprintf("PKCS#11 %s: %s; Ed25519 %q (%s); CKM_EDDSA over %d-byte messages",
			t.cfg.Module, t.info, t.cfg.KeyLabel, how, Ed25519MessageSize)
	}
	return fmt.Sprintf("PKCS#11 %s: %s; RSA-%d %q (%s); CKM_RSA_PKCS over a SHA-256 DigestInfo",
		t.cfg.Module, t.info, t.cfg.Bits, t.cfg.KeyLabel, how)
}

// PublicKey implements Target.
func (t *PKCS11) PublicKey() crypto.PublicKey { return t.pub }

// KeyGenTime is how long C_GenerateKeyPair took (0 when an existing key was used). For tchsm's
// Ed25519 keys that is the nodes' distributed key generation, end to end through PKCS#11.
func (t *PKCS11) KeyGenTime() time.Duration { return t.keyGen }

// NewWorker implements Target: one new RW session, not logged in again.
func (t *PKCS11) NewWorker() (Worker, error) {
	sh, err := t.openSession()
	if err != nil {
		return nil, err
	}
	mech := pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)
	if t.cfg.Ed25519 {
		mech = pkcs11.NewMechanism(ckmEDDSA, nil)
	}
	return &p11Worker{t: t, sh: sh, mech: []*pkcs11.Mechanism{mech}}, nil
}

// Close destroys a generated key (unless KeepKey), closes every session, finalizes the module
// and restores the environment.
func (t *PKCS11) Close() error {
	var errs []error
	if t.ctx != nil {
		if t.generated && !t.cfg.KeepKey && t.key != 0 {
			if err := t.ctx.DestroyObject(t.login, t.key); err != nil {
				errs = append(errs, fmt.Errorf("target: %s: destroy generated key: %w", t.cfg.Name, err))
			}
			if t.pubObj != 0 {
				if err := t.ctx.DestroyObject(t.login, t.pubObj); err != nil {
					errs = append(errs, fmt.Errorf("target: %s: destroy generated public key: %w", t.cfg.Name, err))
				}
			}
		}
		t.mu.Lock()
		open := make([]pkcs11.SessionHandle, 0, len(t.sessions))
		for sh := range t.sessions {
			open = append(open, sh)
		}
		t.mu.Unlock()
		for _, sh := range open {
			if err := t.closeSession(sh); err != nil {
				errs = append(errs, fmt.Errorf("target: %s: C_CloseSession: %w", t.cfg.Name, err))
			}
		}
		if err := t.ctx.Finalize(); err != nil {
			errs = append(errs, fmt.Errorf("target: %s: C_Finalize: %w", t.cfg.Name, err))
		}
		t.ctx.Destroy()
		t.ctx = nil
	}
	for k, v := range t.savedEnv {
		if v == nil {
			os.Unsetenv(k)
		} else {
			os.Setenv(k, *v)
		}
	}
	t.savedEnv = nil
	return errors.Join(errs...)
}

type p11Worker struct {
	t    *PKCS11
	sh   pkcs11.SessionHandle
	mech []*pkcs11.Mechanism
}

func (w *p11Worker) Sign(digest []byte) ([]byte, error) {
	di := digest // Ed25519: CKM_EDDSA signs the whole message
	if !w.t.cfg.Ed25519 {
		var err error
		if di, err = DigestInfo(digest); err != nil {
			return nil, err
		}
	}
	if err := w.t.ctx.SignInit(w.sh, w.mech, w.t.key); err != nil {
		return nil, fmt.Errorf("target: %s: C_SignInit: %w", w.t.cfg.Name, err)
	}
	sig, err := w.t.ctx.Sign(w.sh, di)
	if err != nil {
		return nil, fmt.Errorf("target: %s: C_Sign: %w", w.t.cfg.Name, err)
	}
	return sig, nil
}

func (w *p11Worker) Close() error { return w.t.closeSession(w.sh) }

// PKCS#11 3.0 Ed25519 constants miekg/pkcs11 does not define.
const (
	ckkECEdwards           = 0x40
	ckmECEdwardsKeyPairGen = 0x1055
	ckmEDDSA               = 0x1057
)

// ed25519Params is CKA_EC_PARAMS for Ed25519: the DER OID 1.3.101.112.
var ed25519Params = []byte{0x06, 0x03, 0x2b, 0x65, 0x70}

// findOrGenerateEd25519 finds the private and public Ed25519 key objects labelled KeyLabel, or
// generates them with OpenDNSSEC's template for algorithm 15 (libhsm hsm_generate_eddsa_key:
// both objects on the token, CKA_EC_PARAMS the OID), and reads the public key from the public
// object's CKA_EC_POINT (DER OCTET STRING 04 20 || 32 bytes).
func (t *PKCS11) findOrGenerateEd25519() error {
	find := func(class uint) ([]pkcs11.ObjectHandle, error) {
		tmpl := []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkECEdwards),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, t.cfg.KeyLabel),
		}
		if err := t.ctx.FindObjectsInit(t.login, tmpl); err != nil {
			return nil, fmt.Errorf("target: %s: C_FindObjectsInit: %w", t.cfg.Name, err)
		}
		hs, _, err := t.ctx.FindObjects(t.login, 10)
		if ferr := t.ctx.FindObjectsFinal(t.login); err == nil {
			err = ferr
		}
		if err != nil {
			return nil, fmt.Errorf("target: %s: C_FindObjects: %w", t.cfg.Name, err)
		}
		return hs, nil
	}
	privs, err := find(pkcs11.CKO_PRIVATE_KEY)
	if err != nil {
		return err
	}
	pubs, err := find(pkcs11.CKO_PUBLIC_KEY)
	if err != nil {
		return err
	}
	if len(privs) == 1 && len(pubs) == 1 {
		if pub, err := t.readEdPoint(pubs[0]); err == nil {
			t.key, t.pub = privs[0], pub
			return nil
		}
	}
	id, err := t.ctx.GenerateRandom(t.login, 16)
	if err != nil {
		return fmt.Errorf("target: %s: C_GenerateRandom: %w", t.cfg.Name, err)
	}
	pubT := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, t.cfg.KeyLabel),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkECEdwards),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, ed25519Params),
	}
	privT := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, t.cfg.KeyLabel),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkECEdwards),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
	}
	start := time.Now()
	pubH, privH, err := t.ctx.GenerateKeyPair(t.login,
		[]*pkcs11.Mechanism{pkcs11.NewMechanism(ckmECEdwardsKeyPairGen, nil)}, pubT, privT)
	if err != nil {
		return fmt.Errorf("target: %s: C_GenerateKeyPair(Ed25519): %w", t.cfg.Name, err)
	}
	t.keyGen = time.Since(start)
	t.generated, t.key, t.pubObj = true, privH, pubH
	pub, err := t.readEdPoint(pubH)
	if err != nil {
		return err
	}
	t.pub = pub
	return nil
}

func (t *PKCS11) readEdPoint(h pkcs11.ObjectHandle) (ed25519.PublicKey, error) {
	attrs, err := t.ctx.GetAttributeValue(t.login, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
	if err != nil {
		return nil, fmt.Errorf("target: %s: C_GetAttributeValue(CKA_EC_POINT): %w", t.cfg.Name, err)
	}
	v := attrs[0].Value
	switch {
	case len(v) == 2+ed25519.PublicKeySize && v[0] == 0x04 && v[1] == ed25519.PublicKeySize:
		v = v[2:]
	case len(v) == ed25519.PublicKeySize: // some modules return the raw point
	default:
		return nil, fmt.Errorf("%w: %s: CKA_EC_POINT of %d bytes", ErrKeySize, t.cfg.Name, len(v))
	}
	return ed25519.PublicKey(append([]byte(nil), v...)), nil
}
