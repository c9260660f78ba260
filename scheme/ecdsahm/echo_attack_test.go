package ecdsahm

import (
	"errors"
	"testing"

	"github.com/tchsm/tchsm/scheme"
)

// TestSplitViewWithCorruptNodes plays the attacker of the issue with the echo round: a
// malicious client and t = 2 corrupt members (4 and 5) of a set of five, who seal whatever echo
// suits each honest recipient, against honest members 1, 2 and 3 asked with one presignature to
// sign different digests; the client relays, drops or keeps echoes as it likes. Every honest
// member hears every other honest member (or misses an echo, which refuses too), so none
// releases its share, whatever the corrupt members say.
func TestSplitViewWithCorruptNodes(t *testing.T) {
	c := newCluster(t, 5, 2)
	set := []int{1, 2, 3, 4, 5}
	h1, h2 := digestOf("the digest the policy approved"), digestOf("the attacker's")
	honest, corrupt := []int{1, 2, 3}, []int{4, 5}
	for _, tc := range []struct {
		name string
		// asked is the digest each honest member is asked to sign.
		asked map[int][]byte
		// drop: the client withholds from honest member i the echo of honest member j.
		drop func(i, j int) bool
		// echo is the digest the corrupt members' echoes to honest member i say.
		echo func(i int) []byte
		// released: the control case, no split view: every member releases.
		released bool
	}{
		{"member 1 asked h2, all echoes relayed", map[int][]byte{1: h2, 2: h1, 3: h1},
			func(int, int) bool { return false }, func(i int) []byte { return map[int][]byte{1: h2, 2: h1, 3: h1}[i] }, false},
		{"member 1 asked h2, the others' echoes withheld from it", map[int][]byte{1: h2, 2: h1, 3: h1},
			func(i, j int) bool { return i == 1 || j == 1 }, func(i int) []byte { return map[int][]byte{1: h2, 2: h1, 3: h1}[i] }, false},
		{"every honest member asked h1, the corrupt ones echo h2", map[int][]byte{1: h1, 2: h1, 3: h1},
			func(int, int) bool { return false }, func(int) []byte { return h2 }, false},
		{"control: every member asked h1, no split view", map[int][]byte{1: h1, 2: h1, 3: h1},
			func(int, int) bool { return false }, func(int) []byte { return h1 }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pres, err := c.presign(t, set, 1, nil)
			if err != nil {
				t.Fatal(err)
			}
			var relayed []scheme.Message
			for _, i := range honest {
				out, err := pres[i][0].Prepare(c.chs[i-1], c.request(pres[i][0], tc.asked[i]))
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range out {
					if !tc.drop(m.To, m.From) {
						relayed = append(relayed, m)
					}
				}
			}
			// The corrupt members seal to each honest member the echo tc.echo says: echoes
			// that open, from their own channels.
			for _, j := range corrupt {
				for _, i := range honest {
					stmt := statement(c.request(pres[j][0], tc.echo(i)))
					out, err := sealAll(c.chs[j-1], protoEcho, pres[j][0].echoSession(), 1, []int{i}, func(int) []byte { return stmt })
					if err != nil {
						t.Fatal(err)
					}
					relayed = append(relayed, out...)
				}
			}
			for _, i := range honest {
				var in []scheme.Message
				for _, m := range relayed {
					if m.To == i {
						in = append(in, m)
					}
				}
				share, err := pres[i][0].Release(c.chs[i-1], in)
				if tc.released {
					if err != nil || len(share) != ScalarSize {
						t.Fatalf("control: honest member %d: %v", i, err)
					}
					continue
				}
				if err == nil || share != nil {
					t.Fatalf("honest member %d released a share", i)
				}
				if !errors.Is(err, ErrSplitView) && !errors.Is(err, ErrProtocol) {
					t.Fatalf("honest member %d: %v", i, err)
				}
				if !pres[i][0].Used() {
					t.Fatalf("honest member %d's presignature is still usable", i)
				}
			}
		})
	}
}
