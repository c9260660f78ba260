package compat

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/trust"
	"github.com/tchsm/tchsm/node/store"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
	"github.com/tchsm/tchsm/scheme/schemes"
	"github.com/tchsm/tchsm/scheme/shoup"
)

const fixtures = "testdata/a807de5"

// a807de5Keys is what gen.go.txt dealt; the test checks the records say the same.
var a807de5Keys = []struct {
	name string
	bits int
	e    int
	safe bool
}{
	{"rsa1024-e65537", 1024, 65537, true},
	{"rsa1024-e17", 1024, 17, true},
	{"rsa2048-imported", 2048, 65537, false},
}

// storedNodes are the nodes whose share stores the fixtures hold: k = 3 of the 5.
var storedNodes = []int{1, 3, 5}

// oldSignature is one entry of signatures.json.
type oldSignature struct {
	Name      string   `json:"name"`
	KeyID     string   `json:"key_id"`
	Mechanism string   `json:"mechanism"`
	Message   string   `json:"message"`
	Signature []byte   `json:"signature"`
	Shares    [][]byte `json:"shares"` // serialised tchsmpb.SignatureShare, with proofs
}

// cluster copies the fixture cluster into a temporary folder, as a deployment holds it: files
// 0600 (identity files and stores refuse anything wider; git keeps 0644) and the share stores
// unpacked (Open writes to the file, so it must not be the checked-in copy).
func cluster(t *testing.T) string {
	t.Helper()
	src := filepath.Join(fixtures, "cluster")
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasSuffix(rel, ".gz") {
			zr, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				return err
			}
			if b, err = io.ReadAll(zr); err != nil {
				return err
			}
			out = strings.TrimSuffix(out, ".gz")
		}
		return os.WriteFile(out, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func readProto(t *testing.T, path string, m proto.Message) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(b, m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func readSignatures(t *testing.T) map[string]oldSignature {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtures, "signatures.json"))
	if err != nil {
		t.Fatal(err)
	}
	var list []oldSignature
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	out := map[string]oldSignature{}
	for _, s := range list {
		out[s.Name] = s
	}
	return out
}

// openNode opens node i the way the node does at start-up (node.load): its config, the
// passphrase file, the manifest, the identity sealed under the passphrase, the share store with
// the manifest (so Open verifies every stored record again).
func openNode(t *testing.T, dir string, i int) (*trust.Identity, *store.Store) {
	t.Helper()
	var cfg config.Node
	if err := config.Load(filepath.Join(dir, "nodes", "node-"+strconv.Itoa(i), "node.json"), &cfg); err != nil {
		t.Fatal(err)
	}
	pass, err := cfg.Passphrase()
	if err != nil {
		t.Fatal(err)
	}
	m, err := trust.LoadManifest(cfg.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	id, err := trust.ReadIdentityFile(cfg.Identity, pass)
	if err != nil {
		t.Fatalf("node %d identity: %v", i, err)
	}
	mem, ok := m.Lookup(id.ID)
	if !ok || mem.Index != i || mem.Role != trust.RoleNode || !bytes.Equal(id.Public().SignPub, mem.SignPub) ||
		!bytes.Equal(id.Public().EncPub, mem.EncPub) {
		t.Fatalf("node %d: identity %s does not match the manifest", i, id.ID)
	}
	st, err := store.Open(cfg.Store, pass, store.Options{NodeID: id.ID, Manifest: m})
	if err != nil {
		t.Fatalf("node %d store: %v", i, err)
	}
	t.Cleanup(func() { st.Close() })
	return id, st
}

func em(t *testing.T, pk *shoup.PublicKey, mech scheme.Mechanism, msg []byte) []byte {
	t.Helper()
	payload, err := shoup.Payload(mech, msg)
	if err != nil {
		t.Fatal(err)
	}
	out, err := shoup.EncodePayload(pk.Size(), payload)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestA807de5 loads everything a807de5 wrote and signs with the keys it dealt.
func TestA807de5(t *testing.T) {
	t.Setenv(config.EnvPassphrase, "") // the passphrase comes from each node's passphrase_file
	dir := cluster(t)
	m, err := trust.LoadManifest(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if m.ClusterID != "ccompat807" || m.Threshold != 3 || m.N() != 5 || len(m.Dealers) != 1 || len(m.Clients) != 1 {
		t.Fatalf("manifest: cluster %s, %d of %d, %d dealers, %d clients", m.ClusterID, m.Threshold, m.N(), len(m.Dealers), len(m.Clients))
	}
	for _, f := range []struct {
		cfg  string
		v    any
		idf  string
		role trust.Role
	}{
		{"dealer/dealer.json", new(config.Dealer), "dealer/identity.json", trust.RoleDealer},
		{"clients/client-1/client.json", new(config.Client), "clients/client-1/identity.json", trust.RoleClient},
	} {
		if err := config.Load(filepath.Join(dir, f.cfg), f.v); err != nil {
			t.Fatal(err)
		}
		id, err := trust.ReadIdentityFile(filepath.Join(dir, f.idf), nil)
		if err != nil {
			t.Fatal(err)
		}
		mem, ok := m.Lookup(id.ID)
		if !ok || id.Role != f.role || mem.Role != f.role || !bytes.Equal(id.Public().SignPub, mem.SignPub) {
			t.Fatalf("%s: identity %s (%s) does not match the manifest", f.idf, id.ID, id.Role)
		}
	}

	ids := map[int]*trust.Identity{}
	stores := map[int]*store.Store{}
	for _, i := range storedNodes {
		ids[i], stores[i] = openNode(t, dir, i)
		if got := stores[i].Len(); got != len(a807de5Keys) {
			t.Fatalf("node %d holds %d keys, want %d", i, got, len(a807de5Keys))
		}
	}
	sigs := readSignatures(t)

	for _, want := range a807de5Keys {
		t.Run(want.name, func(t *testing.T) {
			old, ok := sigs[want.name]
			if !ok {
				t.Fatalf("signatures.json has no %s", want.name)
			}

			// The record as the client receives it (GenerateKeyResponse, ListKeysResponse).
			signed := new(tchsmpb.SignedKeyRecord)
			readProto(t, filepath.Join(fixtures, "records", want.name+".pb"), signed)
			rec, err := trust.VerifyKeyRecord(m, signed)
			if err != nil {
				t.Fatal(err)
			}
			spk, err := trust.PublicKey(rec)
			if err != nil {
				t.Fatal(err)
			}
			pk, ok := spk.(*shoup.PublicKey)
			if !ok || spk.Algorithm() != scheme.ShoupRSA || scheme.Of(rec) != scheme.ShoupRSA || rec.GetAlgorithm() != 0 {
				t.Fatalf("a807de5 record decodes as a %v key (algorithm field %d)", spk.Algorithm(), rec.GetAlgorithm())
			}
			if rec.GetKeyId() != old.KeyID || pk.N.BitLen() != want.bits || pk.E != want.e || rec.GetSafePrimes() != want.safe ||
				pk.K != 3 || pk.L != 5 || rec.GetLabel() != "compat "+want.name || string(rec.GetP11Id()) != want.name {
				t.Fatalf("record: key %s, %d bits, e=%d, safe=%v, %d of %d, label %q",
					rec.GetKeyId(), pk.N.BitLen(), pk.E, rec.GetSafePrimes(), pk.K, pk.L, rec.GetLabel())
			}

			// The stored keys: the same record, and each node's own share.
			keys := map[int]*store.Key{}
			shares := map[int]*shoup.KeyShare{}
			for _, i := range storedNodes {
				k, err := stores[i].Get(rec.GetKeyId())
				if err != nil {
					t.Fatalf("node %d: %v", i, err)
				}
				kpk, ok := k.Public.(*shoup.PublicKey)
				if !proto.Equal(k.Signed, signed) || !proto.Equal(k.Record, rec) || !ok || kpk.N.Cmp(pk.N) != 0 {
					t.Fatalf("node %d stores another record for %s", i, rec.GetKeyId())
				}
				ks, err := shoup.KeyShareOf(k.Share)
				if err != nil {
					t.Fatal(err)
				}
				if k.Share.Index() != i || ks.Index != i || len(ks.S) != pk.Size() {
					t.Fatalf("node %d: share index %d, %d bytes", i, ks.Index, len(ks.S))
				}
				keys[i], shares[i] = k, ks
			}

			// A share delivery queued by the a807de5 dealer opens to the share node 1 stored.
			d := new(tchsmpb.KeyShareDelivery)
			readProto(t, filepath.Join(fixtures, "deliveries", "node-1-"+want.name+".pb"), d)
			drec, err := trust.VerifyKeyRecord(m, d.GetSignedRecord())
			if err != nil || !proto.Equal(drec, rec) || d.GetRecipient() != "node-1" {
				t.Fatalf("delivery: record %v, recipient %s", err, d.GetRecipient())
			}
			ps, err := trust.DecryptShare(ids[1], m.ClusterID, rec.GetKeyId(), d.GetEnc(), d.GetCiphertext())
			if err != nil {
				t.Fatal(err)
			}
			if ps.GetKeyId() != rec.GetKeyId() || int(ps.GetIndex()) != 1 || !bytes.Equal(ps.GetS(), shares[1].S) {
				t.Fatal("the delivered share differs from the one node 1 stored")
			}

			// The old signature verifies, and so do the old shares and proofs; the current code
			// computes the same shares from the stored key shares (x_i = EM^(2Δs_i) is
			// deterministic) and combines the old ones into the same signature.
			mech := scheme.SHA256RSAPKCS
			if old.Mechanism != mech.String() {
				t.Fatalf("old signature made with %s", old.Mechanism)
			}
			digest := sha256.Sum256([]byte(old.Message))
			if err := rsa.VerifyPKCS1v15(pk.RSA(), crypto.SHA256, digest[:], old.Signature); err != nil {
				t.Fatalf("old signature: %v", err)
			}
			oldEM := em(t, pk, mech, []byte(old.Message))
			if len(old.Shares) != len(storedNodes) {
				t.Fatalf("%d old shares", len(old.Shares))
			}
			var oldShares []*shoup.SigShare
			for _, b := range old.Shares {
				ss := new(tchsmpb.SignatureShare)
				if err := proto.Unmarshal(b, ss); err != nil {
					t.Fatal(err)
				}
				share := &shoup.SigShare{Index: int(ss.GetIndex()), X: new(big.Int).SetBytes(ss.GetX())}
				proof := &shoup.Proof{C: new(big.Int).SetBytes(ss.GetProof().GetC()), Z: new(big.Int).SetBytes(ss.GetProof().GetZ())}
				if ss.GetKeyId() != rec.GetKeyId() || keys[share.Index] == nil {
					t.Fatalf("old share of key %s, node %d", ss.GetKeyId(), share.Index)
				}
				if err := shoup.VerifyShare(pk, oldEM, share, proof); err != nil {
					t.Fatalf("old share of node %d: %v", share.Index, err)
				}
				mine, err := shoup.SignShare(pk, shares[share.Index], oldEM)
				if err != nil {
					t.Fatal(err)
				}
				if mine.X.Cmp(share.X) != 0 {
					t.Fatalf("node %d: the current code computes another share than a807de5", share.Index)
				}
				oldShares = append(oldShares, share)
			}
			sig, err := shoup.Combine(pk, oldEM, oldShares)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(sig, old.Signature) {
				t.Fatal("the old shares combine into another signature")
			}

			// A fresh message, signed by the k stored nodes as a node and the client do today:
			// each stored key's scheme.Participant answers the key's scheme.Coordinator, first
			// the share round, then the audit round (the proofs) for every share.
			sch, err := schemes.ForRecord(rec)
			if err != nil {
				t.Fatal(err)
			}
			for _, mech := range []scheme.Mechanism{scheme.SHA256RSAPKCS, scheme.SHA512RSAPKCS} {
				msg := []byte("fresh message for " + want.name + " with " + mech.String())
				co, err := sch.NewCoordinator(spk, mech, msg)
				if err != nil {
					t.Fatal(err)
				}
				for _, i := range storedNodes {
					req, err := co.Request(i)
					if err != nil {
						t.Fatal(err)
					}
					rep, err := keys[i].Participant.Respond(context.Background(), rand.Reader, req)
					if err != nil {
						t.Fatalf("node %d: %v", i, err)
					}
					if err := co.Accept(i, rep); err != nil {
						t.Fatalf("node %d: %v", i, err)
					}
				}
				for _, i := range storedNodes {
					req, ask, err := co.Audit(i)
					if err != nil || !ask {
						t.Fatalf("audit of node %d: %v, %v", i, ask, err)
					}
					rep, err := keys[i].Participant.Respond(context.Background(), rand.Reader, req)
					if err != nil {
						t.Fatalf("node %d: %v", i, err)
					}
					if err := co.Judge(i, rep); err != nil {
						t.Fatalf("node %d's proof: %v", i, err)
					}
				}
				sig, err := co.Finish()
				if err != nil {
					t.Fatal(err)
				}
				h, err := mech.Hash()
				if err != nil {
					t.Fatal(err)
				}
				hh := h.New()
				hh.Write(msg)
				if err := rsa.VerifyPKCS1v15(pk.RSA(), h, hh.Sum(nil), sig); err != nil {
					t.Fatalf("%s: crypto/rsa rejects the combined signature: %v", mech, err)
				}
				if err := spk.Verify(mech, msg, sig); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// A store a807de5 wrote: a key deleted with the current code is kept in the trash, still
// restorable after the store is closed and opened again, with the same share; a manifest of
// that release has no client roles, and its client is an admin.
func TestA807de5DeleteRestore(t *testing.T) {
	t.Setenv(config.EnvPassphrase, "")
	dir := cluster(t)
	m, err := trust.LoadManifest(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if c := m.Clients[0]; c.ClientRole != "" || !trust.Permits(c, tchsmpb.BodyType_BODY_TYPE_DELETE_KEY) ||
		!trust.Permits(c, tchsmpb.BodyType_BODY_TYPE_GENERATE_KEY_REQUEST) {
		t.Fatalf("a807de5's client %+v is not an admin", c)
	}
	_, st := openNode(t, dir, 3)
	keys := st.List()
	if len(keys) == 0 {
		t.Fatal("no keys")
	}
	k := keys[0]
	before, err := k.Scheme.MarshalShare(k.Public, k.Share)
	if err != nil {
		t.Fatal(err)
	}
	issued := time.Now()
	if d, err := st.Delete(k.ID, issued); err != nil || !d.Held {
		t.Fatalf("Delete = %+v, %v", d, err)
	}
	if _, err := st.Get(k.ID); err == nil {
		t.Fatal("deleted key still there")
	}
	st.Close()
	_, st = openNode(t, dir, 3)
	if st.Len() != len(keys)-1 {
		t.Fatalf("after reopening: %d keys, want %d", st.Len(), len(keys)-1)
	}
	r, err := st.Restore(k.ID, issued.Add(time.Millisecond), time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	after, err := r.Scheme.MarshalShare(r.Public, r.Share)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) || !proto.Equal(r.Signed, k.Signed) {
		t.Fatal("the restored key differs from the deleted one")
	}
}
