package trust

import "encoding/binary"

// appendLP appends b prefixed with its length as a big-endian uint64: an unambiguous encoding
// of a sequence of byte strings for signing and for HPKE info.
func appendLP(dst, b []byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(len(b)))
	return append(dst, b...)
}

func appendLPString(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(len(s)))
	return append(dst, s...)
}
