package dkg

import (
	"encoding/binary"
	"fmt"
	"github.com/tchsm/tchsm/scheme/frost"

	"go.dedis.ch/kyber/v3"
	"go.dedis.ch/kyber/v3/share"
	pedersen "go.dedis.ch/kyber/v3/share/dkg/pedersen"
	vss "go.dedis.ch/kyber/v3/share/vss/pedersen"
	"go.dedis.ch/kyber/v3/sign/schnorr"
)

// DKG message encodings (scheme.Message.Payload), integers big-endian, byte strings with a
// length prefix (lp16: u16 length, lp32: u32 length), every decoder strict:
//
//	payload        tag:u8 || body || sig:64
//	sig            kyber Schnorr signature (edwards25519) by the sender's long-term DKG key over
//	               "tchsm/frost/dkg/v1" || lp16(session) || from:u16 || to:u16 || tag || body
//
//	tag 1, deal (point to point, round 1):
//	  dealer:u32 || lp16(DH key) || lp16(DH signature) || lp16(nonce) || lp32(cipher) || lp16(signature)
//	tag 2, responses (broadcast, round 2):
//	  count:u16 || count × response || blames
//	  response   dealer:u32 || lp16(session id) || verifier:u32 || status:u8 (1 approval, 0 complaint) || lp16(signature)
//	  blames     count:u16 || count × dealer:u16 (1-based: the dealers this sender accuses)
//	tag 3, justifications (broadcast, round 3):
//	  count:u16 || count × justification || blames
//	  justification  dealer:u32 || lp16(session id) || verifier:u32 || deal || lp16(signature)
//	  deal           lp16(session id) || index:u32 || share:32 || t:u32 || count:u16 || count × commitment:32
//
// Indices inside kyber's structures (dealer, verifier, index) are kyber's, 0-based; the
// envelope's from and to are tchsm's participant indices, 1-based (To 0: broadcast).
//
// Confidentiality: a deal (tag 1) carries the recipient's share of the dealer's polynomial and
// must reach no one else. kyber's vss already encrypts it to the recipient's long-term DKG key
// (ephemeral Diffie-Hellman, HKDF, AES-GCM), and signs it with the dealer's; the trust layer
// may add its own encryption but need not. Responses and justifications are public by design
// (a justification reveals the share a complainer said was wrong). Every message is signed
// by its sender and bound to the session, so a relay can neither forge nor replay one.

const (
	tagDeal           byte = 1
	tagResponses      byte = 2
	tagJustifications byte = 3

	sigSize     = 64
	maxLP16     = 4096
	maxCipher   = 1 << 16
	envelopeTag = "tchsm/frost/dkg/v1"
)

type rd struct {
	b   []byte
	err error
}

func (r *rd) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: DKG message: %s", frost.ErrInvalidEncoding, what)
	}
}

func (r *rd) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.fail(what)
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

func (r *rd) u8(what string) int {
	b := r.take(1, what)
	if b == nil {
		return 0
	}
	return int(b[0])
}

func (r *rd) u16(what string) int {
	b := r.take(2, what)
	if b == nil {
		return 0
	}
	return int(binary.BigEndian.Uint16(b))
}

func (r *rd) u32(what string) uint32 {
	b := r.take(4, what)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

func (r *rd) lp16(what string) []byte {
	n := r.u16(what)
	if n > maxLP16 {
		r.fail(what)
		return nil
	}
	return append([]byte(nil), r.take(n, what)...)
}

func (r *rd) lp32(what string, max int) []byte {
	n := r.u32(what)
	if n > uint32(max) {
		r.fail(what)
		return nil
	}
	return append([]byte(nil), r.take(int(n), what)...)
}

func (r *rd) end() error {
	if r.err == nil && len(r.b) != 0 {
		r.fail("trailing bytes")
	}
	return r.err
}

func lp16(b, v []byte) []byte { return append(putU16(b, len(v)), v...) }
func lp32(b, v []byte) []byte { return append(putU32(b, len(v)), v...) }

func envelopeMessage(session []byte, from, to int, tag byte, body []byte) []byte {
	m := lp16([]byte(envelopeTag), session)
	m = putU16(putU16(m, from), to)
	return append(append(m, tag), body...)
}

// seal signs body as a message from→to and returns the payload.
func (d *DKG) seal(to int, tag byte, body []byte) ([]byte, error) {
	sig, err := schnorr.Sign(d.suite, d.long, envelopeMessage(d.session, d.self, to, tag, body))
	if err != nil {
		return nil, err
	}
	return append(append([]byte{tag}, body...), sig...), nil
}

// open checks a payload's tag and its sender's signature and returns the body.
func (d *DKG) open(from, to int, tag byte, payload []byte) ([]byte, error) {
	if len(payload) < 1+sigSize || payload[0] != tag {
		return nil, fmt.Errorf("%w: DKG message of %d bytes, want tag %d", frost.ErrInvalidEncoding, len(payload), tag)
	}
	body := payload[1 : len(payload)-sigSize]
	sig := payload[len(payload)-sigSize:]
	if err := schnorr.Verify(d.suite, d.pubs[from-1], envelopeMessage(d.session, from, to, tag, body), sig); err != nil {
		return nil, fmt.Errorf("%w: DKG message from %d: bad signature", frost.ErrInvalidEncoding, from)
	}
	return body, nil
}

func encodeDeal(dd *pedersen.Deal) []byte {
	b := putU32(nil, int(dd.Index))
	b = lp16(b, dd.Deal.DHKey)
	b = lp16(b, dd.Deal.Signature)
	b = lp16(b, dd.Deal.Nonce)
	b = lp32(b, dd.Deal.Cipher)
	return lp16(b, dd.Signature)
}

func decodeDeal(b []byte) (*pedersen.Deal, error) {
	r := &rd{b: b}
	dd := &pedersen.Deal{Index: r.u32("dealer"), Deal: &vss.EncryptedDeal{}}
	dd.Deal.DHKey = r.lp16("DH key")
	dd.Deal.Signature = r.lp16("DH signature")
	dd.Deal.Nonce = r.lp16("nonce")
	dd.Deal.Cipher = r.lp32("cipher", maxCipher)
	dd.Signature = r.lp16("signature")
	if err := r.end(); err != nil {
		return nil, err
	}
	if len(dd.Deal.DHKey) != frost.ElementSize {
		return nil, fmt.Errorf("%w: DH key of %d bytes", frost.ErrInvalidEncoding, len(dd.Deal.DHKey))
	}
	return dd, nil
}

func encodeBlames(b []byte, blames []int) []byte {
	b = putU16(b, len(blames))
	for _, j := range blames {
		b = putU16(b, j)
	}
	return b
}

func decodeBlames(r *rd, n int) []int {
	c := r.u16("blames")
	if c > n {
		r.fail("blames")
		return nil
	}
	out := make([]int, 0, c)
	for range c {
		j := r.u16("blame")
		if j < 1 || j > n {
			r.fail("blame out of range")
			return nil
		}
		out = append(out, j)
	}
	return out
}

func encodeResponses(rs []*pedersen.Response, blames []int) []byte {
	b := putU16(nil, len(rs))
	for _, x := range rs {
		b = putU32(b, int(x.Index))
		b = lp16(b, x.Response.SessionID)
		b = putU32(b, int(x.Response.Index))
		st := byte(0)
		if x.Response.Status == vss.StatusApproval {
			st = 1
		}
		b = append(b, st)
		b = lp16(b, x.Response.Signature)
	}
	return encodeBlames(b, blames)
}

func decodeResponses(b []byte, n int) ([]*pedersen.Response, []int, error) {
	r := &rd{b: b}
	c := r.u16("responses")
	if c > n {
		r.fail("too many responses")
	}
	var rs []*pedersen.Response
	for i := 0; i < c && r.err == nil; i++ {
		x := &pedersen.Response{Index: r.u32("dealer"), Response: &vss.Response{}}
		x.Response.SessionID = r.lp16("session id")
		x.Response.Index = r.u32("verifier")
		switch r.u8("status") {
		case 0:
			x.Response.Status = vss.StatusComplaint
		case 1:
			x.Response.Status = vss.StatusApproval
		default:
			r.fail("status")
		}
		x.Response.Signature = r.lp16("signature")
		rs = append(rs, x)
	}
	blames := decodeBlames(r, n)
	if err := r.end(); err != nil {
		return nil, nil, err
	}
	return rs, blames, nil
}

func (d *DKG) encodeJustifications(js []*pedersen.Justification, blames []int) ([]byte, error) {
	b := putU16(nil, len(js))
	for _, j := range js {
		b = putU32(b, int(j.Index))
		b = lp16(b, j.Justification.SessionID)
		b = putU32(b, int(j.Justification.Index))
		dl := j.Justification.Deal
		b = lp16(b, dl.SessionID)
		b = putU32(b, dl.SecShare.I)
		v, err := dl.SecShare.V.MarshalBinary()
		if err != nil || len(v) != frost.ScalarSize {
			return nil, fmt.Errorf("%w: share encoding", frost.ErrDKG)
		}
		b = append(b, v...)
		b = putU32(b, int(dl.T))
		b = putU16(b, len(dl.Commitments))
		for _, c := range dl.Commitments {
			cb, err := c.MarshalBinary()
			if err != nil || len(cb) != frost.ElementSize {
				return nil, fmt.Errorf("%w: commitment encoding", frost.ErrDKG)
			}
			b = append(b, cb...)
		}
		b = lp16(b, j.Justification.Signature)
	}
	return encodeBlames(b, blames), nil
}

func (d *DKG) decodeJustifications(b []byte) ([]*pedersen.Justification, []int, error) {
	r := &rd{b: b}
	c := r.u16("justifications")
	if c > d.n {
		r.fail("too many justifications")
	}
	var js []*pedersen.Justification
	for i := 0; i < c && r.err == nil; i++ {
		j := &pedersen.Justification{Index: r.u32("dealer"), Justification: &vss.Justification{}}
		j.Justification.SessionID = r.lp16("session id")
		j.Justification.Index = r.u32("verifier")
		dl := &vss.Deal{SessionID: r.lp16("deal session id")}
		idx := r.u32("share index")
		v := r.take(frost.ScalarSize, "share")
		dl.T = r.u32("t")
		nc := r.u16("commitments")
		if nc > frost.MaxPlayers || idx >= uint32(d.n) {
			r.fail("deal out of range")
		}
		var commits []kyber.Point
		for range nc {
			pb := r.take(frost.ElementSize, "commitment")
			if r.err != nil {
				break
			}
			p, err := d.point(pb)
			if err != nil {
				r.err = err
				break
			}
			commits = append(commits, p)
		}
		if r.err != nil {
			break
		}
		s, err := d.scalar(v)
		if err != nil {
			r.err = err
			break
		}
		dl.SecShare = &share.PriShare{I: int(idx), V: s}
		dl.Commitments = commits
		j.Justification.Deal = dl
		j.Justification.Signature = r.lp16("signature")
		js = append(js, j)
	}
	blames := decodeBlames(r, d.n)
	if err := r.end(); err != nil {
		return nil, nil, err
	}
	return js, blames, nil
}

// point decodes a kyber point after frost.DecodeElement's checks (kyber's own decoder does none).
func (d *DKG) point(b []byte) (kyber.Point, error) {
	if _, err := frost.DecodeElement(b); err != nil {
		return nil, err
	}
	p := d.suite.Point()
	if err := p.UnmarshalBinary(b); err != nil {
		return nil, fmt.Errorf("%w: %v", frost.ErrInvalidElement, err)
	}
	return p, nil
}

// scalar decodes a kyber scalar after frost.DecodeScalar's check (kyber's copies any 32 bytes).
func (d *DKG) scalar(b []byte) (kyber.Scalar, error) {
	if _, err := frost.DecodeScalar(b); err != nil {
		return nil, err
	}
	s := d.suite.Scalar()
	if err := s.UnmarshalBinary(b); err != nil {
		return nil, fmt.Errorf("%w: %v", frost.ErrInvalidScalar, err)
	}
	return s, nil
}

func putU16(b []byte, v int) []byte { return binary.BigEndian.AppendUint16(b, uint16(v)) }
func putU32(b []byte, v int) []byte { return binary.BigEndian.AppendUint32(b, uint32(v)) }
