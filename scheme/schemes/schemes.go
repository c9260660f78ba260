// Package schemes is the registry of tchsm's threshold signature schemes, by algorithm id: the
// one place that lists the implementations of package scheme's interface. Node, client, store,
// trust and the PKCS#11 token find a key's scheme here from its record, and know no scheme by
// name otherwise.
package schemes

import (
	"fmt"
	"strings"

	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
	"github.com/tchsm/tchsm/scheme/ecdsahm"
	"github.com/tchsm/tchsm/scheme/frost"
	"github.com/tchsm/tchsm/scheme/shoup"
)

// registry holds every scheme tchsm implements. A scheme is added here, and nowhere else.
var registry = []scheme.Scheme{
	shoup.Scheme{},
	frost.Scheme{},
	ecdsahm.Scheme{},
}

// Lookup returns the scheme of algorithm a (scheme.Unspecified is scheme.ShoupRSA, the
// algorithm of records that predate the field).
func Lookup(a scheme.Algorithm) (scheme.Scheme, error) {
	if a == scheme.Unspecified {
		a = scheme.ShoupRSA
	}
	for _, s := range registry {
		if s.Algorithm() == a {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%w: %v", scheme.ErrUnknownAlgorithm, a)
}

// ByName returns the scheme whose algorithm is named name (as Algorithm.String spells it,
// case-insensitively).
func ByName(name string) (scheme.Scheme, error) {
	for _, s := range registry {
		if strings.EqualFold(s.Algorithm().String(), name) {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%w: %q", scheme.ErrUnknownAlgorithm, name)
}

// ForRecord returns the scheme of a key record.
func ForRecord(rec *tchsmpb.KeyRecord) (scheme.Scheme, error) { return Lookup(scheme.Of(rec)) }

// DecodePublic finds a record's scheme and decodes its public key.
func DecodePublic(rec *tchsmpb.KeyRecord) (scheme.Scheme, scheme.PublicKey, error) {
	s, err := ForRecord(rec)
	if err != nil {
		return nil, nil, err
	}
	pk, err := s.DecodePublic(rec)
	if err != nil {
		return nil, nil, err
	}
	return s, pk, nil
}

// All returns the registered schemes.
func All() []scheme.Scheme { return append([]scheme.Scheme(nil), registry...) }

// Accepts reports whether s accepts mechanism m.
func Accepts(s scheme.Scheme, m scheme.Mechanism) bool {
	for _, x := range s.Mechanisms() {
		if x == m {
			return true
		}
	}
	return false
}
