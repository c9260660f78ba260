package dnspolicy

import (
	"fmt"
	"strconv"
	"strings"
)

// typeCodes are the RR types a policy names by mnemonic (IANA's DNS parameters); any other is
// written TYPEnnn (RFC 3597).
var typeCodes = map[string]uint16{
	"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "HINFO": 13, "MX": 15, "TXT": 16, "RP": 17,
	"AFSDB": 18, "SIG": 24, "KEY": 25, "AAAA": 28, "LOC": 29, "SRV": 33, "NAPTR": 35, "KX": 36,
	"CERT": 37, "DNAME": 39, "APL": 42, "DS": 43, "SSHFP": 44, "IPSECKEY": 45, "NSEC": 47,
	"DNSKEY": 48, "DHCID": 49, "NSEC3": 50, "NSEC3PARAM": 51, "TLSA": 52, "SMIMEA": 53, "HIP": 55,
	"CDS": 59, "CDNSKEY": 60, "OPENPGPKEY": 61, "CSYNC": 62, "ZONEMD": 63, "SVCB": 64, "HTTPS": 65,
	"EUI48": 108, "EUI64": 109, "URI": 256, "CAA": 257,
}

var typeNames = func() map[uint16]string {
	m := make(map[uint16]string, len(typeCodes))
	for n, c := range typeCodes {
		m[c] = n
	}
	return m
}()

// TypeName is an RR type's mnemonic, or TYPEnnn.
func TypeName(t uint16) string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return "TYPE" + strconv.Itoa(int(t))
}

// TypeCode parses an RR type mnemonic or TYPEnnn (case-insensitive). Types that are never
// signed (OPT, RRSIG, the meta-types) are refused.
func TypeCode(s string) (uint16, error) {
	u := strings.ToUpper(s)
	c, ok := typeCodes[u]
	if !ok {
		n, err := strconv.ParseUint(strings.TrimPrefix(u, "TYPE"), 10, 16)
		if !strings.HasPrefix(u, "TYPE") || err != nil {
			return 0, fmt.Errorf("dnspolicy: unknown RR type %q", s)
		}
		c = uint16(n)
	}
	if unsignable(c) {
		return 0, fmt.Errorf("dnspolicy: RR type %q is never signed", s)
	}
	return c, nil
}
