package rabbitmq

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
)

// DefaultMaxMessageSize is Config.MaxMessageSize when it is 0: the largest message body a Conn
// takes in. tchsm's largest messages stay below 1 MiB; the brokers set up by tchsm init refuse
// more than 4 MiB anyway (max_message_size), this bound is for brokers that do not.
const DefaultMaxMessageSize = 16 << 20

// maxFrame bounds one AMQP frame read by the guard: the Conn negotiates frame_max 128 KiB
// (amqp091-go's default), so a larger frame is a broken or hostile peer.
const maxFrame = 1 << 20

// AMQP 0-9-1 frame types (section 4.2.3).
const (
	frameHeader = 2
	frameBody   = 3
	frameEnd    = 0xCE
)

var errFrame = errors.New("transport: malformed AMQP frame from the broker")

// sizeGuard sits between the broker's socket (after TLS) and amqp091-go, which assembles a
// whole message in memory, as large as its content header announces, before handing it over:
// a 120 MiB message cost a node 530 MiB of memory before its own size check. The guard reads
// the frames as they come; a content header announcing a body larger than max is rewritten to
// announce an empty body, and the body frames that follow on that channel are dropped as they
// arrive. The library then delivers the message with an empty body, which tchsm's handlers
// refuse as malformed (a control message is dead-lettered, a request answered with an error),
// and the guard never holds more than one frame.
type sizeGuard struct {
	net.Conn
	max    uint64
	buf    []byte // backing array of in, reused
	in     []byte // bytes read, not yet parsed
	out    []byte // frames ready for the library, from outOff on; reused
	outOff int
	skip   int               // bytes of a dropped body frame still to discard
	drop   map[uint16]uint64 // channel -> body bytes still to drop
	raw    bool              // not AMQP frames (the broker's protocol header): pass through
	err    error
}

func newSizeGuard(c net.Conn, max uint64) *sizeGuard {
	return &sizeGuard{Conn: c, max: max, drop: map[uint16]uint64{}, buf: make([]byte, 132<<10)}
}

func (g *sizeGuard) Read(p []byte) (int, error) {
	for !g.raw && g.outOff == len(g.out) {
		if g.err != nil {
			return 0, g.err
		}
		g.out, g.outOff = g.out[:0], 0
		// Move what is left to the front; grow only for a frame larger than the buffer.
		n := copy(g.buf, g.in)
		if n == len(g.buf) {
			if len(g.buf) > maxFrame+8 {
				return 0, fmt.Errorf("%w: a frame larger than %d bytes", errFrame, maxFrame)
			}
			g.buf = append(g.buf, make([]byte, len(g.buf))...)
		}
		m, err := g.Conn.Read(g.buf[n:])
		g.in = g.buf[:n+m]
		if perr := g.parse(); perr != nil {
			g.err = perr
			return 0, perr
		}
		if err != nil {
			g.err = err
		}
	}
	if g.raw {
		if g.outOff < len(g.out) || len(g.in) > 0 {
			g.out = append(g.out[g.outOff:], g.in...)
			g.outOff, g.in = 0, nil
			n := copy(p, g.out)
			g.outOff = n
			if g.outOff == len(g.out) {
				g.out, g.outOff = nil, 0
			}
			return n, nil
		}
		return g.Conn.Read(p)
	}
	n := copy(p, g.out[g.outOff:])
	g.outOff += n
	return n, nil
}

// parse moves the complete frames of in to out, rewriting or dropping as described above.
func (g *sizeGuard) parse() error {
	for {
		if g.skip > 0 {
			k := min(g.skip, len(g.in))
			g.in, g.skip = g.in[k:], g.skip-k
			if g.skip > 0 {
				return nil
			}
		}
		if len(g.in) >= 4 && string(g.in[:4]) == "AMQP" {
			g.raw = true // a protocol header: the broker refuses our version and closes
			return nil
		}
		if len(g.in) < 7 {
			return nil
		}
		typ, ch, size := g.in[0], binary.BigEndian.Uint16(g.in[1:3]), binary.BigEndian.Uint32(g.in[3:7])
		if size > maxFrame {
			return fmt.Errorf("%w: a frame of %d bytes", errFrame, size)
		}
		if left, ok := g.drop[ch]; ok && typ == frameBody {
			// Discarded as it arrives, never buffered whole.
			if uint64(size) >= left {
				delete(g.drop, ch)
			} else {
				g.drop[ch] = left - uint64(size)
			}
			g.in, g.skip = g.in[7:], int(size)+1
			continue
		}
		total := 7 + int(size) + 1
		if len(g.in) < total {
			return nil
		}
		f := g.in[:total]
		if f[total-1] != frameEnd {
			return fmt.Errorf("%w: no frame end", errFrame)
		}
		if typ == frameHeader {
			// class-id (2), weight (2), body size (8), properties
			if size < 12 {
				return fmt.Errorf("%w: short content header", errFrame)
			}
			bs := f[7+4 : 7+12]
			if body := binary.BigEndian.Uint64(bs); body > g.max {
				binary.BigEndian.PutUint64(bs, 0)
				g.drop[ch] = body
			} else {
				delete(g.drop, ch)
			}
		}
		g.out = append(g.out, f...)
		g.in = g.in[total:]
	}
}

var _ io.Reader = (*sizeGuard)(nil)
