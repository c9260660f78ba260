// Package dnspolicytest writes the signed data of RRSIGs (RFC 4034 section 3.1.8.1) for tests of
// the nodes' signing policy: what a DNSSEC signer passes to C_Sign with CKM_SHA256_RSA_PKCS.
package dnspolicytest

import (
	"crypto"
	"crypto/ed25519"
	"encoding/binary"
	"strings"
	"time"

	"github.com/tchsm/tchsm/internal/dnspolicy"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
)

// Name is a presentation name in lower-case wire form; it panics on a bad name (tests only).
func Name(s string) []byte {
	w, err := dnspolicy.WireName(s)
	if err != nil {
		panic(err)
	}
	return w
}

// ZoneA returns the signed data of an RRSIG by key pub (as a ZSK; algorithm 8, RSASHA256, for
// an RSA key, 15, ED25519, for an Ed25519 one) over the A RRset of www.<zone> (192.0.2.1, TTL
// 3600), valid from inception to expiration.
func ZoneA(pub crypto.PublicKey, zone string, inception, expiration time.Time) []byte {
	alg, sch := uint8(8), scheme.ShoupRSA
	if _, ok := pub.(ed25519.PublicKey); ok {
		alg, sch = 15, scheme.Ed25519FROST
	}
	tags, err := dnspolicy.KeyTags(dnspolicy.Key{Record: &tchsmpb.KeyRecord{Algorithm: uint32(sch)}, Public: pub}, alg)
	if err != nil {
		panic(err)
	}
	zone = strings.TrimSuffix(zone, ".")
	owner := Name("www." + zone)
	b := binary.BigEndian.AppendUint16(nil, 1) // type covered A
	b = append(b, alg, byte(strings.Count(zone, ".")+2))
	b = binary.BigEndian.AppendUint32(b, 3600)
	b = binary.BigEndian.AppendUint32(b, uint32(expiration.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(inception.Unix()))
	b = binary.BigEndian.AppendUint16(b, tags[0])
	b = append(b, Name(zone)...)
	b = append(b, owner...)
	b = binary.BigEndian.AppendUint16(b, 1) // A
	b = binary.BigEndian.AppendUint16(b, 1) // IN
	b = binary.BigEndian.AppendUint32(b, 3600)
	b = binary.BigEndian.AppendUint16(b, 4)
	return append(b, 192, 0, 2, 1)
}
