package ecdsahm

import (
	"encoding/binary"
	"fmt"
)

// Wire encodings of the signing path (the presigning and key generation messages are sealed
// bodies of fixed layouts, documented where they are made). Integers are big-endian; every
// decoder is strict: exact lengths, ranges checked, nothing left over.
//
//	sign request   version:u8 (1) || lp16(key id, 1..256) || lp16(presignature id, 17..68) ||
//	               count:u8 || count × index:u8 (strictly increasing, odd count ≥ 3) ||
//	               lp16(digest, 1..64)
//	sign share     s_i: 32 bytes below n (DecodeScalar)
//	presignature   PresignPublic.Encode
//
// The node-to-node messages (scheme.Message payloads, relayed by the coordinator) are sealed on
// the Channel: nonce:12 || AES-256-GCM(body), additional data "tchsm/ecdsahm/channel/v1" ||
// lp16(protocol) || lp16(session) || from:u16 || to:u16 || round:u8. Their bodies:
//
//	keygen  round 1   H_i:32 || f_i(j):32            session: the key id
//	keygen  round 2   C_i0:65 || … || C_it:65
//	presign round 1   count × (k:32 || a:32 || b:32 || e:32), the dealer's values at j
//	                  session: lp16(key id) || lp16(batch id) || count:u8 || set
//	presign round 2   count × (R_i:65 || w_i:32)
//	presign round 3   count × W_i:65
//	echo              statement:32 (sha256 of "tchsm/ecdsahm/sign/v1" || lp16(key id) ||
//	                  lp16(presignature id) || set || lp16(digest))
//	                  session: lp16(key id) || lp16(presignature id)

const signRequestVersion = 1

// EncodeSignRequest encodes req.
func EncodeSignRequest(req SignRequest) ([]byte, error) {
	if len(req.KeyID) == 0 || len(req.KeyID) > 256 || len(req.ID) < 17 || len(req.ID) > 68 ||
		len(req.Digest) == 0 || len(req.Digest) > MaxDigest || len(req.Set) < 3 || len(req.Set)%2 == 0 {
		return nil, fmt.Errorf("%w: sign request out of range", ErrInvalidEncoding)
	}
	if err := checkSet(req.Set, MaxPlayers, (len(req.Set)-1)/2, 0); err != nil {
		return nil, err
	}
	b := []byte{signRequestVersion}
	b = appendLP(b, req.KeyID)
	b = appendLP(b, req.ID)
	b = append(b, encodeSet(req.Set)...)
	return appendLP(b, req.Digest), nil
}

// DecodeSignRequest decodes EncodeSignRequest's output.
func DecodeSignRequest(b []byte) (SignRequest, error) {
	bad := func(what string) (SignRequest, error) {
		return SignRequest{}, fmt.Errorf("%w: sign request: %s", ErrInvalidEncoding, what)
	}
	lp := func(min, max int) []byte {
		if len(b) < 2 {
			return nil
		}
		l := int(binary.BigEndian.Uint16(b))
		if l < min || l > max || len(b) < 2+l {
			return nil
		}
		v := append([]byte(nil), b[2:2+l]...)
		b = b[2+l:]
		return v
	}
	if len(b) < 1 || b[0] != signRequestVersion {
		return bad("version")
	}
	b = b[1:]
	var req SignRequest
	if req.KeyID = lp(1, 256); req.KeyID == nil {
		return bad("key id")
	}
	if req.ID = lp(17, 68); req.ID == nil {
		return bad("presignature id")
	}
	if len(b) < 1 {
		return bad("set")
	}
	cnt := int(b[0])
	if cnt < 3 || cnt%2 == 0 || len(b) < 1+cnt {
		return bad("set")
	}
	req.Set = make([]int, cnt)
	for a := range req.Set {
		req.Set[a] = int(b[1+a])
	}
	if err := checkSet(req.Set, MaxPlayers, (cnt-1)/2, 0); err != nil {
		return bad("set")
	}
	b = b[1+cnt:]
	if req.Digest = lp(1, MaxDigest); req.Digest == nil {
		return bad("digest")
	}
	if len(b) != 0 {
		return bad("trailing bytes")
	}
	return req, nil
}
