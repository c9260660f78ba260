package frost

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Payload encodings of FROST's requests and replies (scheme.Request.Payload and
// scheme.Reply.Payload), all integers big-endian, every decoder strict (exact lengths, no
// trailing bytes, elements checked with DecodeElement):
//
//	commit request   0x01 || count:u16                    count in 1..MaxBatch
//	commit reply     ttl:u32 || count:u16 || count × entry  ttl in seconds; count ≥ 1
//	  entry          nonce:u64 || D:32 || E:32             the nonce's id and its commitments
//	sign request     0x02 || len:u32 || message || count:u16 || count × (identifier:u16 || entry)
//	sign reply       z_i:32                                SerializeScalar of the share
//
// The sign request carries the whole commitment list, sorted by identifier, each with its
// nonce id, so the same payload goes to every signer. Round is 1, Session, Relayed and Audit
// are unused. A pool commitment (Precommitter) is one entry, 72 bytes.

const (
	tagCommit byte = 0x01
	tagSign   byte = 0x02

	entrySize = 8 + 2*ElementSize
)

func appendEntry(b []byte, c *Commitment) []byte {
	b = putU64(b, c.Nonce)
	b = append(b, c.Hiding[:]...)
	return append(b, c.Binding[:]...)
}

func decodeEntry(id int, b []byte) (Commitment, error) {
	c, err := parseEntry(id, b)
	if err != nil {
		return c, err
	}
	return c, c.decode()
}

// parseEntry reads an entry without decoding its elements (Commitment.decode, CheckList).
func parseEntry(id int, b []byte) (Commitment, error) {
	c := Commitment{Identifier: id}
	if len(b) != entrySize {
		return c, fmt.Errorf("%w: commitment of %d bytes", ErrInvalidEncoding, len(b))
	}
	c.Nonce = binary.BigEndian.Uint64(b)
	copy(c.Hiding[:], b[8:8+ElementSize])
	copy(c.Binding[:], b[8+ElementSize:])
	return c, nil
}

// EncodeCommitRequest returns a commit request's payload.
func EncodeCommitRequest(count int) ([]byte, error) {
	if count < 1 || count > MaxBatch {
		return nil, fmt.Errorf("%w: batch of %d, need 1..%d", ErrInvalidEncoding, count, MaxBatch)
	}
	return putU16([]byte{tagCommit}, count), nil
}

// DecodeCommitRequest returns the count of a commit request's payload.
func DecodeCommitRequest(b []byte) (int, error) {
	if len(b) != 3 || b[0] != tagCommit {
		return 0, fmt.Errorf("%w: commit request", ErrInvalidEncoding)
	}
	n := int(binary.BigEndian.Uint16(b[1:]))
	if n < 1 || n > MaxBatch {
		return 0, fmt.Errorf("%w: batch of %d, need 1..%d", ErrInvalidEncoding, n, MaxBatch)
	}
	return n, nil
}

// EncodeCommitReply returns a commit reply's payload.
func EncodeCommitReply(ttl time.Duration, cs []Commitment) []byte {
	b := putU32(nil, int(ttl/time.Second))
	b = putU16(b, len(cs))
	for i := range cs {
		b = appendEntry(b, &cs[i])
	}
	return b
}

// DecodeCommitReply decodes participant id's commit reply.
func DecodeCommitReply(id int, b []byte) (time.Duration, []Commitment, error) {
	if len(b) < 6 {
		return 0, nil, fmt.Errorf("%w: commit reply of %d bytes", ErrInvalidEncoding, len(b))
	}
	ttl := time.Duration(binary.BigEndian.Uint32(b)) * time.Second
	n := int(binary.BigEndian.Uint16(b[4:]))
	b = b[6:]
	if n < 1 || n > MaxBatch || len(b) != n*entrySize {
		return 0, nil, fmt.Errorf("%w: commit reply of %d entries in %d bytes", ErrInvalidEncoding, n, len(b))
	}
	cs := make([]Commitment, n)
	for i := range cs {
		c, err := decodeEntry(id, b[i*entrySize:(i+1)*entrySize])
		if err != nil {
			return 0, nil, err
		}
		cs[i] = c
	}
	return ttl, cs, nil
}

// EncodeSignRequest returns a sign request's payload. The list is encoded as given; the
// participant checks it (CheckList).
func EncodeSignRequest(msg []byte, list []Commitment) ([]byte, error) {
	if len(msg) > MaxMessage {
		return nil, fmt.Errorf("%w: message of %d bytes, at most %d", ErrInvalidEncoding, len(msg), MaxMessage)
	}
	if len(list) < 1 || len(list) > MaxPlayers {
		return nil, fmt.Errorf("%w: %d commitments", ErrInvalidEncoding, len(list))
	}
	b := make([]byte, 0, 1+4+len(msg)+2+len(list)*(2+entrySize))
	b = putU32(append(b, tagSign), len(msg))
	b = append(b, msg...)
	b = putU16(b, len(list))
	for i := range list {
		b = putU16(b, list[i].Identifier)
		b = appendEntry(b, &list[i])
	}
	return b, nil
}

// SignRequestMessage returns the message a sign request's payload asks to sign, without
// decoding its commitments (DecodeSignRequest checks them when the participant signs). sign is
// false for a commit request, which signs nothing; any other payload is an error.
func SignRequestMessage(b []byte) (msg []byte, sign bool, err error) {
	if len(b) > 0 && b[0] == tagCommit {
		_, err := DecodeCommitRequest(b)
		return nil, false, err
	}
	if len(b) < 5 || b[0] != tagSign {
		return nil, false, fmt.Errorf("%w: neither a sign nor a commit request", ErrInvalidEncoding)
	}
	ml := binary.BigEndian.Uint32(b[1:])
	if ml > MaxMessage || uint64(len(b)-5) < uint64(ml)+2 {
		return nil, false, fmt.Errorf("%w: message of %d bytes", ErrInvalidEncoding, ml)
	}
	return b[5 : 5+ml], true, nil
}

// DecodeSignRequest decodes a sign request's payload into the message and the commitment list
// (each element checked; the list's order and range are CheckList's).
func DecodeSignRequest(b []byte) ([]byte, []Commitment, error) {
	msg, list, err := parseSignRequest(b)
	if err != nil {
		return nil, nil, err
	}
	for i := range list {
		if err := list[i].decode(); err != nil {
			return nil, nil, err
		}
	}
	return msg, list, nil
}

// parseSignRequest is DecodeSignRequest without decoding the elements: the participant decodes
// them in Sign (CheckList), all but its own entry, whose points it computed when it handed the
// commitment out; so each element of the list is decoded and checked once there.
func parseSignRequest(b []byte) ([]byte, []Commitment, error) {
	if len(b) < 5 || b[0] != tagSign {
		return nil, nil, fmt.Errorf("%w: sign request", ErrInvalidEncoding)
	}
	ml := binary.BigEndian.Uint32(b[1:])
	b = b[5:]
	if ml > MaxMessage || uint64(len(b)) < uint64(ml)+2 {
		return nil, nil, fmt.Errorf("%w: message of %d bytes", ErrInvalidEncoding, ml)
	}
	msg := b[:ml]
	b = b[ml:]
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	const item = 2 + entrySize
	if n < 1 || n > MaxPlayers || len(b) != n*item {
		return nil, nil, fmt.Errorf("%w: %d commitments in %d bytes", ErrInvalidEncoding, n, len(b))
	}
	list := make([]Commitment, n)
	for i := range list {
		e := b[i*item : (i+1)*item]
		c, err := parseEntry(int(binary.BigEndian.Uint16(e)), e[2:])
		if err != nil {
			return nil, nil, err
		}
		list[i] = c
	}
	return append([]byte(nil), msg...), list, nil
}
