package trust

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	tchsmpb "github.com/tchsm/tchsm/proto"
	"google.golang.org/protobuf/proto"
)

// fuzzCluster is one fixed cluster shared by the fuzz targets of a process, so that the seed
// envelopes (signed by its members) stay valid across iterations.
var fuzzCluster *cluster

func getFuzzCluster(t testing.TB) *cluster {
	if fuzzCluster == nil {
		fuzzCluster = newCluster(t)
	}
	return fuzzCluster
}

// seedBodies returns one meaningful body of every body type, with the role that sends it.
func seedBodies(t testing.TB, c *cluster) []struct {
	from *Identity
	msg  proto.Message
} {
	rec := testRecord(t)
	srec, err := SignKeyRecord(c.dealer, rec)
	if err != nil {
		t.Fatal(err)
	}
	enc, ct, err := EncryptShare(c.m.Nodes[0], c.m.ClusterID, rec.KeyId, &tchsmpb.KeyShare{KeyId: rec.KeyId, Index: 1, S: make([]byte, 128)})
	if err != nil {
		t.Fatal(err)
	}
	proof := &tchsmpb.ShareProof{C: bytes.Repeat([]byte{1}, 32), Z: bytes.Repeat([]byte{2}, 300)}
	penc, pct, skey, err := SealPIN(c.m.Nodes[0], c.m.ClusterID, "alice", PINPurposeLogin, &tchsmpb.PINSecret{Pin: []byte("1234")})
	if err != nil {
		t.Fatal(err)
	}
	session := bytes.Repeat([]byte{3}, SessionIDSize)
	inner, _ := proto.Marshal(signReq)
	w := seedWithTickets(t, c)
	return []struct {
		from *Identity
		msg  proto.Message
	}{
		{c.dealer, &tchsmpb.KeyShareDelivery{SignedRecord: srec, Recipient: "node1", Enc: enc, Ciphertext: ct}},
		{c.nodes[0], &tchsmpb.DeleteKeyAck{KeyId: rec.KeyId, Node: "node1", Ok: true}},
		{c.alice, &tchsmpb.DeleteKey{KeyId: rec.KeyId}},
		{c.nodes[1], &tchsmpb.DeleteKeyAck{KeyId: rec.KeyId, Node: "node2", Error: "no such key"}},
		{c.alice, signReq},
		{c.nodes[2], &tchsmpb.SignatureShare{KeyId: rec.KeyId, Index: 3, X: bytes.Repeat([]byte{9}, 128), Proof: proof}},
		{c.bob, &tchsmpb.ProofRequest{KeyId: rec.KeyId, Payload: []byte("T"), Indices: []uint32{1, 3}}},
		{c.nodes[0], &tchsmpb.Proof{KeyId: rec.KeyId, Index: 1, X: []byte{7}, Proof: proof}},
		{c.dealer, &tchsmpb.ListKeys{}},
		{c.nodes[0], &tchsmpb.KeyList{Node: "node1", Keys: []*tchsmpb.SignedKeyRecord{srec, srec}}},
		{c.alice, &tchsmpb.HealthRequest{}},
		{c.nodes[1], &tchsmpb.Health{Node: "node2", Version: "v0", UptimeNanos: 42, KeyIds: []string{rec.KeyId}, InFlight: 3}},
		{c.nodes[2], &tchsmpb.Error{Code: tchsmpb.Error_UNKNOWN_KEY, Message: "unknown key", KeyId: rec.KeyId}},
		{c.alice, &tchsmpb.GenerateKeyRequest{Bits: 2048, PublicExponent: 65537, Label: "k", P11Id: []byte{1}}},
		{c.dealer, &tchsmpb.GenerateKeyResponse{Record: srec, Acknowledged: []string{"node1", "node2"}, Missing: []string{"node3"}}},
		{c.bob, &tchsmpb.SignBatch{Requests: []*tchsmpb.SignRequest{signReq, {KeyId: rec.KeyId, Payload: []byte("T2")}}}},
		{c.nodes[0], &tchsmpb.SignBatchResult{Results: []*tchsmpb.SignBatchItem{
			{Result: &tchsmpb.SignBatchItem_Share{Share: &tchsmpb.SignatureShare{KeyId: rec.KeyId, Index: 1, X: []byte{5}}}},
			{Result: &tchsmpb.SignBatchItem_Error{Error: &tchsmpb.Error{Code: tchsmpb.Error_EXPIRED, KeyId: rec.KeyId}}}}}},
		{c.alice, &tchsmpb.DKGRequest{KeyId: rec.KeyId, Step: 1, Messages: []*tchsmpb.DKGMessage{{From: 2, To: 1, Payload: []byte("deal")}}}},
		{c.nodes[1], &tchsmpb.DKGReply{KeyId: rec.KeyId, Step: 3, Done: true, Record: srec.Record,
			Endorsement: EndorseRecordBytes(c.nodes[1], srec.Record), Qualified: []uint32{1, 2, 3}}},
		{c.alice, &tchsmpb.DKGCommit{KeyId: rec.KeyId, Record: &tchsmpb.SignedKeyRecord{Record: srec.Record,
			Endorsements: []*tchsmpb.KeyEndorsement{EndorseRecordBytes(c.nodes[0], srec.Record)}}}},
		{c.nodes[2], &tchsmpb.DKGCommitAck{KeyId: rec.KeyId, Node: "node3", Ok: true}},
		{c.alice, &tchsmpb.ReshareRequest{KeyId: rec.KeyId, Record: srec, Run: bytes.Repeat([]byte{7}, 16),
			Messages: []*tchsmpb.DKGMessage{{From: 1, To: 0, Payload: []byte{2, 0}}}}},
		{c.alice, &tchsmpb.ReshareCommit{KeyId: rec.KeyId, Record: &tchsmpb.SignedKeyRecord{Record: srec.Record,
			Endorsements: []*tchsmpb.KeyEndorsement{EndorseRecordBytes(c.nodes[0], srec.Record)}}}},
		{c.alice, &tchsmpb.RestoreKey{KeyId: rec.KeyId}},
		{c.dealer, &tchsmpb.RestoreKeyAck{KeyId: rec.KeyId, Restored: []string{"node1", "node2"}, Missing: []string{"node3"}}},
		{c.alice, &tchsmpb.DKGLateDeals{Record: &tchsmpb.SignedKeyRecord{Record: srec.Record,
			Endorsements: []*tchsmpb.KeyEndorsement{EndorseRecordBytes(c.nodes[0], srec.Record)}},
			Recipient: "node3", Qualified: []uint32{1, 2}, Deals: []*tchsmpb.DKGMessage{{From: 1, To: 3, Payload: []byte("deal")}}}},
		{c.dealer, &tchsmpb.DKGLateDealsAck{Queued: []string{"node3"}}},
		{c.alice, &tchsmpb.PINLogin{Enc: penc, Ciphertext: pct}},
		{c.nodes[0], &tchsmpb.PINResult{Status: tchsmpb.PINResult_INCORRECT, Node: "node1", Failures: 3, MaxFailures: 10}},
		{c.bob, &tchsmpb.PINChange{Enc: penc, Ciphertext: pct}},
		{c.alice, &tchsmpb.PINUnlock{Client: "bob"}},
		{c.alice, &tchsmpb.LoggedIn{Session: session, Type: tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, Body: inner,
			Mac: LoginMAC(skey, session, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, inner)}},
		{c.alice, w},
		{c.alice, &tchsmpb.ManifestPush{Updates: []*tchsmpb.ManifestUpdate{seedUpdate(t, c)}}},
		{c.nodes[0], &tchsmpb.ManifestState{Member: "node1", Serial: 1, Hash: c.m.Hash(), Applied: 1}},
		{c.bob, &tchsmpb.ManifestFetch{Have: 0}},
		{c.dealer, &tchsmpb.ManifestChain{Member: "dealer", Serial: 1, Updates: []*tchsmpb.ManifestUpdate{seedUpdate(t, c)}}},
	}
}

// seedUpdate is an update of c.m (with an admin) removing bob, signed by that admin.
func seedUpdate(t testing.TB, c *cluster) *tchsmpb.ManifestUpdate {
	t.Helper()
	cur, admins := withAdmins(t, c.m, 1, 1)
	next := cur.Clone()
	next.Clients = next.Clients[:1]
	u, err := NewUpdate(cur, next)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Sign(admins[0]); err != nil {
		t.Fatal(err)
	}
	pb, err := u.Proto()
	if err != nil {
		t.Fatal(err)
	}
	return pb
}

// seedTicketKey is the ticket key of alice's process in the seeds.
var seedTicketKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{4}, ed25519.SeedSize))

// seedWithTickets is alice's DeleteKey with the tickets of node1 (logged in) and node2 (no PIN
// held), valid at the test clusters' clock.
func seedWithTickets(t testing.TB, c *cluster) *tchsmpb.WithTickets {
	pub := seedTicketKey.Public().(ed25519.PublicKey)
	t1, err := IssueTicket(c.nodes[0], c.m.ClusterID, "alice", tchsmpb.TicketStatement_LOGGED_IN, pub, c.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	t2, err := IssueTicket(c.nodes[1], c.m.ClusterID, "alice", tchsmpb.TicketStatement_NO_VERIFIER, pub, c.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := proto.Marshal(&tchsmpb.DeleteKey{KeyId: "k1"})
	w := &tchsmpb.WithTickets{Tickets: []*tchsmpb.LoginTicket{t1, t2}, Type: tchsmpb.BodyType_BODY_TYPE_DELETE_KEY, Body: body}
	SignTicketed(seedTicketKey, c.m.ClusterID, "alice", w)
	return w
}

// FuzzCheckTickets feeds arbitrary WithTickets to CheckTickets: no panics, errors wrap a ticket
// sentinel, and an accepted one has k tickets of distinct nodes that verify for alice.
func FuzzCheckTickets(f *testing.F) {
	c := getFuzzCluster(f)
	w := seedWithTickets(f, c)
	b, _ := proto.Marshal(w)
	f.Add(b)
	f.Add(b[:len(b)/2])
	stmt, _ := proto.Marshal(w.Tickets[0])
	f.Add(stmt)
	f.Fuzz(func(t *testing.T, data []byte) {
		w := new(tchsmpb.WithTickets)
		if proto.Unmarshal(data, w) != nil {
			return
		}
		nodes, err := CheckTickets(c.m, "alice", w, c.clock.Now())
		if err != nil {
			if !errors.Is(err, ErrBadTicket) && !errors.Is(err, ErrNotEnoughTickets) && !errors.Is(err, ErrBadTicketedSignature) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, n := range nodes {
			seen[n] = true
		}
		if len(seen) != len(nodes) || len(nodes) < c.m.Threshold {
			t.Fatalf("accepted with nodes %v", nodes)
		}
		// Every node counted has a ticket here that verifies on its own and names the key.
		for _, tk := range w.GetTickets() {
			if st, err := VerifyTicket(c.m, "alice", tk, c.clock.Now()); err == nil && bytes.Equal(st.GetTicketKey(), w.GetTicketKey()) {
				delete(seen, st.GetNode())
			}
		}
		if len(seen) > 0 {
			t.Fatalf("counted nodes %v without a valid ticket", seen)
		}
		if !ed25519.Verify(w.GetTicketKey(), TicketedInput(c.m.ClusterID, "alice", w.GetType(), w.GetBody()), w.GetSignature()) {
			t.Fatal("accepted without the ticket key's signature")
		}
	})
}

// FuzzOpen feeds arbitrary bytes to Open. Seeds are valid envelopes of every body type. Open
// must never panic, every failure must wrap a sentinel, and a success must come from a manifest
// member allowed to send the type, within the time window.
func FuzzOpen(f *testing.F) {
	c := getFuzzCluster(f)
	for _, s := range seedBodies(f, c) {
		raw, _, err := c.sealer(s.from).Seal(tchsmpb.BodyTypeOf(s.msg), s.msg, 20*time.Second)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
		f.Add(raw[:len(raw)/2])
		// The same body with a pair MAC for node1 (the opener below is node1's).
		if raw, _, err = c.sealer(s.from).SealTo(c.m.Nodes[0], tchsmpb.BodyTypeOf(s.msg), s.msg, 20*time.Second); err == nil {
			f.Add(raw)
		}
	}
	f.Add([]byte{})
	f.Add([]byte{0x08, 0x01})
	sentinels := []error{ErrMalformed, ErrWrongCluster, ErrUnknownSender, ErrBadSignature, ErrUnauthorized, ErrExpired, ErrReplay,
		ErrUnsupportedVersion, ErrUnsupportedBodyType}
	f.Fuzz(func(t *testing.T, raw []byte) {
		o := c.opener(t, WithIdentity(c.nodes[0]))
		op, err := o.Open(raw)
		if err != nil {
			for _, s := range sentinels {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("error %v wraps no sentinel", err)
		}
		if mem, ok := c.m.Lookup(op.Sender.ID); !ok || !reflect.DeepEqual(mem, op.Sender) || !Allowed(op.Sender.Role, op.Type) {
			t.Fatalf("accepted a message from %+v of type %v", op.Sender, op.Type)
		}
		if op.Deadline.Before(c.clock.Now()) || tchsmpb.BodyTypeOf(op.Message) != op.Type {
			t.Fatalf("accepted %+v", op)
		}
		if _, err := o.Open(raw); !errors.Is(err, ErrReplay) {
			t.Fatalf("second Open = %v, want ErrReplay", err)
		}
	})
}

// fuzzTypes lists every message of the wire format: the body types, then the others.
func fuzzTypes() []func() proto.Message {
	var out []func() proto.Message
	for _, bt := range tchsmpb.BodyTypes() {
		out = append(out, func() proto.Message { m, _ := tchsmpb.NewBody(bt); return m })
	}
	return append(out,
		func() proto.Message { return new(tchsmpb.Envelope) },
		func() proto.Message { return new(tchsmpb.KeyRecord) },
		func() proto.Message { return new(tchsmpb.SignedKeyRecord) },
		func() proto.Message { return new(tchsmpb.KeyShare) },
		func() proto.Message { return new(tchsmpb.ShareProof) },
	)
}

// FuzzUnmarshal decodes arbitrary bytes as every message type (selected by the first byte) and
// runs the trust checks that take that type: decoding must not panic, a decoded message must
// survive a marshal/unmarshal round trip, and the checks must fail cleanly.
func FuzzUnmarshal(f *testing.F) {
	c := getFuzzCluster(f)
	types := fuzzTypes()
	for _, s := range seedBodies(f, c) {
		b, _ := proto.Marshal(s.msg)
		f.Add(byte(tchsmpb.BodyTypeOf(s.msg)-1), b)
	}
	rec := testRecord(f)
	rb, _ := proto.Marshal(rec)
	f.Add(byte(len(types)-4), rb)
	srec, _ := SignKeyRecord(c.dealer, rec)
	sb, _ := proto.Marshal(srec)
	f.Add(byte(len(types)-3), sb)
	env, _, _ := c.aliceSealer.Seal(tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, signReq, 20*time.Second)
	f.Add(byte(len(types)-5), env)
	f.Fuzz(func(t *testing.T, which byte, data []byte) {
		m := types[int(which)%len(types)]()
		if err := proto.Unmarshal(data, m); err != nil {
			return
		}
		again, err := proto.Marshal(m)
		if err != nil {
			t.Fatalf("re-marshal: %v", err)
		}
		m2 := m.ProtoReflect().New().Interface()
		if err := proto.Unmarshal(again, m2); err != nil || !proto.Equal(m, m2) {
			t.Fatalf("round trip: %v", err)
		}
		switch m := m.(type) {
		case *tchsmpb.KeyRecord:
			_ = CheckKeyRecord(m)
		case *tchsmpb.SignedKeyRecord:
			if r, err := VerifyKeyRecord(c.m, m); err == nil && CheckKeyRecord(r) != nil {
				t.Fatal("verified record fails its checks")
			}
		case *tchsmpb.KeyShareDelivery:
			_, _ = VerifyKeyRecord(c.m, m.SignedRecord)
			if s, err := DecryptShare(c.nodes[0], c.m.ClusterID, rec.KeyId, m.Enc, m.Ciphertext); err == nil && s.KeyId != rec.KeyId {
				t.Fatal("decrypted a share of another key")
			}
		}
	})
}

// FuzzManifest parses arbitrary JSON as a manifest: no panics, and whatever parses is valid and
// survives a save/parse round trip unchanged.
func FuzzManifest(f *testing.F) {
	c := getFuzzCluster(f)
	// Seeds are compact: the fuzzer minimises every new input, and that is quadratic in length.
	small := &Manifest{Version: 1, ClusterID: "c", Threshold: 1,
		Nodes: []Member{c.m.Nodes[0]}, Dealers: c.m.Dealers, Clients: c.m.Clients[:1]}
	small.Nodes[0].Index = 1
	for _, m := range []*Manifest{small, c.m} {
		good, err := json.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(good)
		f.Add(bytes.Replace(good, []byte(`"index":1`), []byte(`"index":2`), 1))
		f.Add(bytes.Replace(good, []byte(`"threshold":`), []byte(`"threshold":-`), 1))
	}
	f.Add([]byte(`{"version":1,"cluster_id":"c","threshold":1,"nodes":[{"id":"n","role":"node","index":1,"sign_pub":"","enc_pub":""}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidManifest) {
				t.Fatalf("error %v is not ErrInvalidManifest", err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("parsed manifest invalid: %v", err)
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		m2, err := ParseManifest(out)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzIdentityFile parses arbitrary identity files (without passphrase, so no Argon2 runs).
func FuzzIdentityFile(f *testing.F) {
	id := mustIdentity(f, "node1", RoleNode)
	path := filepath.Join(f.TempDir(), "id.json")
	if err := WriteIdentityFile(path, id, nil); err != nil {
		f.Fatal(err)
	}
	plain, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(plain)
	f.Add([]byte(`{"version":1,"id":"x","role":"node","kdf":{"name":"argon2id"},"sealed":"AAAA"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := parseIdentity(data, nil)
		if err == nil && got.check() != nil {
			t.Fatal("parsed an unusable identity")
		}
	})
}

// TestSeedEnvelopesOpen checks that every fuzz seed is a valid message from its sender, so the
// fuzzers start from envelopes that pass every check.
func TestSeedEnvelopesOpen(t *testing.T) {
	c := newCluster(t)
	seen := map[tchsmpb.BodyType]bool{}
	for _, s := range seedBodies(t, c) {
		bt := tchsmpb.BodyTypeOf(s.msg)
		raw, _, err := c.sealer(s.from).Seal(bt, s.msg, 20*time.Second)
		if err != nil {
			t.Fatalf("%v from %s: %v", bt, s.from.ID, err)
		}
		op, err := c.opener(t).Open(raw)
		if err != nil {
			t.Fatalf("%v from %s: %v", bt, s.from.ID, err)
		}
		if !proto.Equal(op.Message, s.msg) || op.Sender.ID != s.from.ID {
			t.Fatalf("%v: opened %v", bt, op.Message)
		}
		seen[bt] = true
	}
	if len(seen) != len(tchsmpb.BodyTypes()) {
		t.Fatalf("seeds cover %d of %d body types", len(seen), len(tchsmpb.BodyTypes()))
	}
}
