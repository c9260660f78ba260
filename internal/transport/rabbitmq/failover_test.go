package rabbitmq

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tchsm/tchsm/internal/transport"
)

func TestSpreadAndDialOrder(t *testing.T) {
	// A node passes its manifest index: five nodes over three brokers, none with more than two.
	count := make([]int, 3)
	for i := 1; i <= 5; i++ {
		count[spreadIndex(i, "ignored", 3)]++
	}
	if slices.Max(count) > 2 {
		t.Errorf("5 nodes over 3 brokers: %v", count)
	}
	if spreadIndex(-4, "", 3) != 2 || spreadIndex(7, "", 1) != 0 {
		t.Error("spreadIndex: negative spread or one broker")
	}
	// Spread 0: derived from the name, stable, and spread: 30 names reach every one of 3 brokers.
	seen := map[int]bool{}
	for i := range 30 {
		name := "tchsm-client-" + string(rune('a'+i))
		j := spreadIndex(0, name, 3)
		if j != spreadIndex(0, name, 3) || j < 0 || j > 2 {
			t.Fatalf("spreadIndex(0, %q) unstable or out of range: %d", name, j)
		}
		seen[j] = true
	}
	if len(seen) != 3 {
		t.Errorf("30 names reach brokers %v only", seen)
	}
	for _, tc := range []struct {
		home, lost, n int
		want          []int
	}{
		{0, -1, 3, []int{0, 1, 2}},
		{1, -1, 3, []int{1, 2, 0}},
		{1, 1, 3, []int{2, 0, 1}}, // the lost broker last
		{0, 2, 3, []int{0, 1, 2}},
		{0, 0, 1, []int{0}},
	} {
		if got := dialOrder(tc.home, tc.lost, tc.n); !slices.Equal(got, tc.want) {
			t.Errorf("dialOrder(%d, %d, %d) = %v, want %v", tc.home, tc.lost, tc.n, got, tc.want)
		}
	}
}

func TestConfigValidationURLs(t *testing.T) {
	ctx := context.Background()
	for _, cfg := range []Config{
		{URLs: []string{"", " "}, ClusterID: "c"},
		{URLs: []string{"amqp://u:topsecret@a/", "http://u:topsecret@b/"}, ClusterID: "c"},
		{URLs: []string{"amqp://u:topsecret@a:port/"}, ClusterID: "c"},
		{URL: "amqp://u:topsecret@a/", URLs: []string{"amqp://u:topsecret@a/"}, ClusterID: "c"},
		{URLs: slices.Repeat([]string{"amqp://x/"}, maxURLs+1), ClusterID: "c"},
	} {
		_, err := Dial(ctx, cfg)
		if !errors.Is(err, transport.ErrConfig) || strings.Contains(err.Error(), "topsecret") {
			t.Errorf("Dial(%v) = %v", cfg.URLs, err)
		}
	}
}

// proxy is a TCP forwarder to the local broker that a test can take down, killing its
// connections, as a broker node that stops would.
type proxy struct {
	t      *testing.T
	ln     net.Listener
	addr   string
	mu     sync.Mutex
	conns  []net.Conn
	closed bool
}

func newProxy(t *testing.T) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, addr: ln.Addr().String()}
	go p.accept()
	t.Cleanup(p.down)
	return p
}

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		b, err := net.Dial("tcp", "127.0.0.1:5672")
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			b.Close()
			return
		}
		p.conns = append(p.conns, c, b)
		p.mu.Unlock()
		go func() { io.Copy(b, c); b.Close() }()
		go func() { io.Copy(c, b); c.Close() }()
	}
}

// down stops listening and cuts every connection.
func (p *proxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	p.ln.Close()
	for _, c := range p.conns {
		c.Close()
	}
}

func (p *proxy) url(vhostURL string) string {
	return strings.Replace(vhostURL, "127.0.0.1:5672", p.addr, 1)
}

// A Conn fails over to the next broker of its list: at Dial when the first does not answer,
// and when the one it uses goes away; calls and a consumer go on through the other.
func TestFailoverToNextBroker(t *testing.T) {
	url := testVhost(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Nothing listens on port 1: Dial goes on to the next URL without a backoff.
	start := time.Now()
	c, err := Dial(ctx, Config{URLs: []string{"amqp://guest:guest@127.0.0.1:1/", url}, ClusterID: "test", Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Broker() != RedactURL(url) {
		t.Errorf("connected to %q", c.Broker())
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Dial took %v with the first broker down", d)
	}
	c.Close()

	a, b := newProxy(t), newProxy(t)
	urls := []string{a.url(url), b.url(url)}
	srv, err := Dial(ctx, Config{URLs: urls, Spread: 1, ClusterID: "test", Name: "server"}) // 1 mod 2: starts on b
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := Dial(ctx, Config{URLs: urls, Spread: 2, ClusterID: "test", Name: "client"}) // 2 mod 2 = a
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if srv.Broker() != RedactURL(urls[1]) || cli.Broker() != RedactURL(urls[0]) {
		t.Fatalf("spread: server on %s, client on %s", srv.Broker(), cli.Broker())
	}
	q, err := srv.DeclareNode(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(t, srv, q.RPC, 2)
	got := make(chan string, 10)
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()
	go srv.Consume(cctx, q.Control, func(ctx context.Context, body []byte) error {
		got <- string(body)
		return nil
	})
	if err := srv.WaitConsuming(ctx, q.Control); err != nil {
		t.Fatal(err)
	}
	call := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			// Short: a request published just before the broker deleted the server's
			// queue with its connection is lost, and only its deadline ends its Call.
			cctx, ccancel := context.WithTimeout(ctx, time.Second)
			r, err := cli.Call(cctx, q.RPC, []byte(what))
			ccancel()
			if err == nil && string(r) == what {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("Call %s: %q, %v", what, r, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	call("before")

	// The server's broker goes: the server moves to the client's.
	t0 := time.Now()
	b.down()
	call("after server failover")
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("server failed over in %v", d)
	} else {
		t.Logf("server failed over in %v", d)
	}
	if srv.Broker() != RedactURL(urls[0]) {
		t.Errorf("server now on %q", srv.Broker())
	}
	if err := cli.PublishDurable(ctx, q.Control, []byte("share")); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != "share" {
			t.Fatalf("consumed %q", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("consumer did not resume on the other broker")
	}
}
