package nodetest

import (
	"crypto/ed25519"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tchsm/tchsm/internal/trust"
	tchsmpb "github.com/tchsm/tchsm/proto"
)

// Ticketed wraps body in a WithTickets for the dealer, as this peer's client process sends it:
// with tickets of kind issued at at by the nodes given (by index, read from their identity
// files), all naming a fresh ticket key that signs the request.
func (p *Peer) Ticketed(kind tchsmpb.TicketStatement_Kind, at time.Time, body proto.Message, nodes ...int) *tchsmpb.WithTickets {
	c := p.c
	c.TB.Helper()
	pub, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		c.TB.Fatal(err)
	}
	client := p.Sealer.Identity.ID
	w := &tchsmpb.WithTickets{Type: tchsmpb.BodyTypeOf(body)}
	if w.Body, err = proto.Marshal(body); err != nil {
		c.TB.Fatal(err)
	}
	for _, i := range nodes {
		t, err := trust.IssueTicket(c.Identity(c.NodeID(i)), c.Manifest.ClusterID, client, kind, pub, at)
		if err != nil {
			c.TB.Fatal(err)
		}
		w.Tickets = append(w.Tickets, t)
	}
	trust.SignTicketed(key, c.Manifest.ClusterID, client, w)
	return w
}
