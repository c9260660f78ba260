package dealer_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tchsm/tchsm/dealer"
	"github.com/tchsm/tchsm/internal/protocol"
	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/node/nodetest"
	tchsmpb "github.com/tchsm/tchsm/proto"
)

// TestDealerNewerClients: the dealer answers a body type it does not know, alone or inside a
// WithTickets, with a sealed UNSUPPORTED_BODY_TYPE (docs/operations/upgrade.md), and advertises
// its protocol in Health.
func TestDealerNewerClients(t *testing.T) {
	c := nodetest.NewInMemory(t, nodetest.Options{K: 2, N: 3})
	d := c.Dealer(dealer.Options{NoPool: true})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- d.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	p := c.Peer("client-1")
	var h *tchsmpb.Health
	for range 100 {
		op, err := p.Call(nodetest.Ctx(t, 5*time.Second), "dealer", transport.Dealer, tchsmpb.BodyType_BODY_TYPE_HEALTH_REQUEST, &tchsmpb.HealthRequest{})
		if errors.Is(err, transport.ErrNoRoute) {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		h = op.Message.(*tchsmpb.Health)
		break
	}
	if h == nil || h.GetProtocol() != protocol.Current || h.GetMinProtocol() != protocol.Min {
		t.Fatalf("dealer's health: %v", h)
	}
	raw := nodetest.Forge(c.Identity("client-1"), c.Manifest.ClusterID, 999, &tchsmpb.HealthRequest{}, time.Now(), 10*time.Second)
	if _, err := p.CallRaw(nodetest.Ctx(t, 5*time.Second), "dealer", transport.Dealer, raw); nodetest.Code(err) != tchsmpb.Error_UNSUPPORTED_BODY_TYPE {
		t.Fatalf("body type 999: %v", err)
	}
	w := &tchsmpb.WithTickets{Type: 999}
	if _, err := p.Call(nodetest.Ctx(t, 5*time.Second), "dealer", transport.Dealer, tchsmpb.BodyType_BODY_TYPE_WITH_TICKETS, w); nodetest.Code(err) != tchsmpb.Error_UNSUPPORTED_BODY_TYPE {
		t.Fatalf("WithTickets of type 999: %v", err)
	}
}
