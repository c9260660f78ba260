package rabbitmq

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func frame(typ byte, ch uint16, payload []byte) []byte {
	f := []byte{typ, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(f[1:3], ch)
	binary.BigEndian.PutUint32(f[3:7], uint32(len(payload)))
	return append(append(f, payload...), frameEnd)
}

func header(bodySize uint64) []byte {
	p := make([]byte, 14) // class 60, weight 0, body size, no properties
	binary.BigEndian.PutUint16(p[0:2], 60)
	binary.BigEndian.PutUint64(p[4:12], bodySize)
	return p
}

// The guard rewrites an oversize content header to an empty body and drops that body's
// frames, leaving the other channels' frames alone, whatever the read sizes.
func TestSizeGuardFrames(t *testing.T) {
	var in, want bytes.Buffer
	big := bytes.Repeat([]byte("x"), 1000)
	in.Write(frame(1, 1, []byte("method")))
	want.Write(frame(1, 1, []byte("method")))
	in.Write(frame(frameHeader, 1, header(3000)))
	want.Write(frame(frameHeader, 1, header(0)))
	in.Write(frame(frameHeader, 2, header(5)))
	want.Write(frame(frameHeader, 2, header(5)))
	for range 3 {
		in.Write(frame(frameBody, 1, big))
	}
	in.Write(frame(frameBody, 2, []byte("small")))
	want.Write(frame(frameBody, 2, []byte("small")))
	in.Write(frame(frameHeader, 1, header(100)))
	want.Write(frame(frameHeader, 1, header(100)))
	in.Write(frame(frameBody, 1, big[:100]))
	want.Write(frame(frameBody, 1, big[:100]))
	in.Write(frame(8, 0, nil)) // heartbeat
	want.Write(frame(8, 0, nil))
	for _, chunk := range []int{1, 7, 100, 1 << 16} {
		a, b := net.Pipe()
		go func() {
			data := in.Bytes()
			for len(data) > 0 {
				n := min(chunk, len(data))
				b.Write(data[:n])
				data = data[n:]
			}
			b.Close()
		}()
		got, err := io.ReadAll(newSizeGuard(a, 2000))
		if err != nil || !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("chunks of %d: %d bytes (%v), want %d", chunk, len(got), err, want.Len())
		}
	}
	// Broken frames are an error, not a hang or a huge allocation.
	for name, data := range map[string][]byte{
		"no frame end": append(frame(1, 1, []byte("m"))[:8], 0),
		"huge frame":   {1, 0, 1, 0xff, 0xff, 0xff, 0xff},
		"short header": frame(frameHeader, 1, []byte{1, 2}),
	} {
		a, b := net.Pipe()
		go func() { b.Write(data); b.Close() }()
		if _, err := io.ReadAll(newSizeGuard(a, 2000)); !errors.Is(err, errFrame) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A message larger than MaxMessageSize reaches the consumer with an empty body, without being
// read into memory, and the messages after it arrive whole.
func TestOversizeMessageNotRead(t *testing.T) {
	url := testVhost(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Dial(ctx, Config{URL: url, ClusterID: "test", Name: "small", MaxMessageSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q, err := c.DeclareNode(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	_, ch := rawChannel(t, url)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	const bigSize = 48 << 20
	for _, body := range [][]byte{make([]byte, bigSize), []byte("after")} {
		dc, err := ch.PublishWithDeferredConfirm("", q.Control, false, false, amqp.Publishing{Body: body})
		if err != nil || !dc.Wait() {
			t.Fatalf("publish: %v", err)
		}
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got := make(chan []byte, 2)
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()
	go c.Consume(cctx, q.Control, func(_ context.Context, b []byte) error { got <- b; return nil })
	for _, want := range []string{"", "after"} {
		select {
		case b := <-got:
			if string(b) != want {
				t.Fatalf("got %d bytes, want %q", len(b), want)
			}
		case <-ctx.Done():
			t.Fatal("no delivery")
		}
	}
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > bigSize/4 {
		t.Fatalf("%d MiB allocated while consuming a %d MiB message", d>>20, bigSize>>20)
	}
	t.Logf("allocated %.1f MiB while consuming a %d MiB message", float64(after.TotalAlloc-before.TotalAlloc)/(1<<20), bigSize>>20)
}
