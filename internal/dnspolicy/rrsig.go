package dnspolicy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// MaxMessage is the largest message a node takes for a policy check (and the largest message a
// client sends with a request: larger ones go digest-only). A DNS message, and so any RRset a
// server can serve, is at most 65,535 bytes; the RRSIG fields before it are at most 273.
const MaxMessage = 64 << 10

// Limits of the wire format (RFC 1035, section 2.3.4).
const (
	maxName  = 255 // octets of a name, length octets and the root's zero included
	maxLabel = 63
)

// ErrMalformed wraps every reason a message is not an RRSIG's signed data.
var ErrMalformed = errors.New("dnspolicy: not RRSIG RDATA and a canonical RRset")

// Types that are never signed: the pseudo-types of RFC 6895 section 3.1 (OPT, the QTYPEs and
// meta-types from 128 up), RRSIG itself (RFC 4035 section 2.2) and type 0.
func unsignable(t uint16) bool {
	return t == 0 || t == 41 || t == 46 || (t >= 128 && t <= 255)
}

// SignedData is the signed data of one RRSIG (RFC 4034 section 3.1.8.1): the RRSIG RDATA
// without the signature, and the RRset it covers in canonical form.
type SignedData struct {
	TypeCovered uint16
	Algorithm   uint8
	Labels      uint8
	OriginalTTL uint32
	Expiration  uint32 // seconds, modulo 2^32 (RFC 4034 section 3.1.5)
	Inception   uint32
	KeyTag      uint16
	// Signer and Owner are the names in wire form (lower case, uncompressed); SignerName and
	// OwnerName give them in presentation form for logs.
	Signer, Owner []byte
	Class         uint16
	RRs           int // records in the RRset
}

// SignerName is the signer's name in presentation form ("example.test.").
func (d *SignedData) SignerName() string { return presentation(d.Signer) }

// OwnerName is the RRset's owner in presentation form.
func (d *SignedData) OwnerName() string { return presentation(d.Owner) }

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Parse reads msg as the data an RRSIG signs, exactly as RFC 4034 sections 3.1.8.1, 6.2 and 6.3
// and RFC 4035 section 2.2 define it, and refuses anything else: the RRSIG RDATA fields, the
// signer's name, then one or more RRs with the same owner, class and type (the type covered),
// each with the original TTL, in canonical order without duplicates. Names must be
// uncompressed, lower case (RFC 4034 section 6.2; RFC 6840 section 5.1), at most 255 octets
// with labels of at most 63; the owner must be at or below the signer and have the number of
// labels the Labels field says (without a leading "*" label). The RDATA of the records is not
// parsed: its length is checked, its content is not (names inside it are not checked for case).
func Parse(msg []byte) (*SignedData, error) {
	if len(msg) > MaxMessage {
		return nil, malformed("%d bytes, at most %d", len(msg), MaxMessage)
	}
	const fixed = 18
	if len(msg) < fixed {
		return nil, malformed("%d bytes, shorter than the RRSIG fields", len(msg))
	}
	d := &SignedData{
		TypeCovered: binary.BigEndian.Uint16(msg[0:]),
		Algorithm:   msg[2],
		Labels:      msg[3],
		OriginalTTL: binary.BigEndian.Uint32(msg[4:]),
		Expiration:  binary.BigEndian.Uint32(msg[8:]),
		Inception:   binary.BigEndian.Uint32(msg[12:]),
		KeyTag:      binary.BigEndian.Uint16(msg[16:]),
	}
	if unsignable(d.TypeCovered) {
		return nil, malformed("type %s is never signed", TypeName(d.TypeCovered))
	}
	signer, off, err := readName(msg, fixed)
	if err != nil {
		return nil, fmt.Errorf("%w (signer's name)", err)
	}
	d.Signer = signer
	var prev []byte
	for off < len(msg) {
		owner, next, err := readName(msg, off)
		if err != nil {
			return nil, fmt.Errorf("%w (owner of record %d)", err, d.RRs+1)
		}
		off = next
		if len(msg)-off < 10 {
			return nil, malformed("record %d ends inside its fixed fields", d.RRs+1)
		}
		typ := binary.BigEndian.Uint16(msg[off:])
		class := binary.BigEndian.Uint16(msg[off+2:])
		ttl := binary.BigEndian.Uint32(msg[off+4:])
		rdlen := int(binary.BigEndian.Uint16(msg[off+8:]))
		off += 10
		if len(msg)-off < rdlen {
			return nil, malformed("record %d: RDATA of %d bytes, %d left", d.RRs+1, rdlen, len(msg)-off)
		}
		rdata := msg[off : off+rdlen]
		off += rdlen
		if d.RRs == 0 {
			d.Owner, d.Class = owner, class
		} else {
			if !bytes.Equal(owner, d.Owner) || class != d.Class {
				return nil, malformed("record %d is not in the RRset of the first (owner or class differs)", d.RRs+1)
			}
			// Canonical order (RFC 4034 section 6.3): RDATA as left-justified octet strings,
			// ascending; duplicates are removed, so the order is strict.
			if bytes.Compare(rdata, prev) <= 0 {
				return nil, malformed("record %d is out of canonical order or a duplicate", d.RRs+1)
			}
		}
		if typ != d.TypeCovered {
			return nil, malformed("record %d has type %s, the RRSIG covers %s", d.RRs+1, TypeName(typ), TypeName(d.TypeCovered))
		}
		if ttl != d.OriginalTTL {
			return nil, malformed("record %d has TTL %d, not the original TTL %d", d.RRs+1, ttl, d.OriginalTTL)
		}
		prev = rdata
		d.RRs++
	}
	if d.RRs == 0 {
		return nil, malformed("no records after the RRSIG fields")
	}
	n, wild := labelCount(d.Owner)
	if wild {
		n--
	}
	if int(d.Labels) != n {
		return nil, malformed("labels field %d, the owner has %d", d.Labels, n)
	}
	if !under(d.Owner, d.Signer) {
		return nil, malformed("owner %s is not at or below the signer %s", d.OwnerName(), d.SignerName())
	}
	return d, nil
}

// readName reads an uncompressed, lower-case name at off and returns it in wire form and the
// offset after it.
func readName(msg []byte, off int) ([]byte, int, error) {
	start := off
	for {
		if off >= len(msg) {
			return nil, 0, malformed("name runs past the end")
		}
		l := int(msg[off])
		if l&0xc0 != 0 {
			// 0xc0: a compression pointer; 0x40 and 0x80: extended label types (RFC 6891).
			return nil, 0, malformed("compressed name or label type 0x%02x", l&0xc0)
		}
		if off+1+l-start > maxName {
			return nil, 0, malformed("name longer than %d octets", maxName)
		}
		if l == 0 {
			return msg[start : off+1], off + 1, nil
		}
		if off+1+l > len(msg) {
			return nil, 0, malformed("label runs past the end")
		}
		for _, c := range msg[off+1 : off+1+l] {
			if c >= 'A' && c <= 'Z' {
				return nil, 0, malformed("upper-case letter in a name (not canonical)")
			}
		}
		off += 1 + l
	}
}

// labels splits a wire name (checked by readName or WireName) into its labels, root excluded.
func labels(name []byte) [][]byte {
	var out [][]byte
	for off := 0; off < len(name) && name[off] != 0; off += 1 + int(name[off]) {
		out = append(out, name[off+1:off+1+int(name[off])])
	}
	return out
}

// labelCount returns the number of labels of a wire name, root excluded, and whether the first
// is "*".
func labelCount(name []byte) (int, bool) {
	ls := labels(name)
	return len(ls), len(ls) > 0 && len(ls[0]) == 1 && ls[0][0] == '*'
}

// under reports whether wire name is zone or below it (both lower case).
func under(name, zone []byte) bool {
	if len(name) < len(zone) || !bytes.Equal(name[len(name)-len(zone):], zone) {
		return false
	}
	// The suffix must start on a label boundary of name.
	cut := len(name) - len(zone)
	for off := 0; off <= cut; off += 1 + int(name[off]) {
		if off == cut {
			return true
		}
		if name[off] == 0 {
			break
		}
	}
	return false
}

// presentation writes a wire name as text, with RFC 4343 escapes for dots, backslashes and
// bytes outside printable ASCII.
func presentation(name []byte) string {
	ls := labels(name)
	if len(ls) == 0 {
		return "."
	}
	var b strings.Builder
	for _, l := range ls {
		for _, c := range l {
			switch {
			case c == '.' || c == '\\' || c == '"' || c == ';' || c == '(' || c == ')' || c == '@' || c == '$':
				b.WriteByte('\\')
				b.WriteByte(c)
			case c <= ' ' || c >= 0x7f:
				fmt.Fprintf(&b, "\\%03d", c)
			default:
				b.WriteByte(c)
			}
		}
		b.WriteByte('.')
	}
	return b.String()
}

// WireName converts a zone name in presentation form ("example.test" or "example.test.", no
// escapes) to lower-case wire form.
func WireName(s string) ([]byte, error) {
	s = strings.TrimSuffix(strings.ToLower(s), ".")
	if s == "" {
		return []byte{0}, nil
	}
	var out []byte
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > maxLabel || strings.ContainsAny(l, "\\ \t\"") {
			return nil, fmt.Errorf("dnspolicy: bad zone name %q", s)
		}
		out = append(out, byte(len(l)))
		out = append(out, l...)
	}
	out = append(out, 0)
	if len(out) > maxName {
		return nil, fmt.Errorf("dnspolicy: zone name %q longer than %d octets", s, maxName)
	}
	return out, nil
}
