package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/tchsm/tchsm/internal/rpc"
	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/trust"
	tchsmpb "github.com/tchsm/tchsm/proto"
)

// Manifest updates, the client's side (internal/trust/update.go, docs/operations/manifest.md):
// an admin client carries updates the admins signed offline to the dealer and every node
// (PushManifest); any client fetches the updates it lacks (FetchManifest) to bring its own
// manifest file forward. The client's in-memory manifest stays the one it was opened with: a
// client only needs the nodes' and the dealer's entries, which a client revocation does not
// touch; after an update that replaces a node or the dealer, fetch and open the client again.

// MemberManifest is what one member answered to a push or a health request about its manifest.
type MemberManifest struct {
	ID      string
	Serial  uint64
	Hash    string
	Applied int    // updates of the push it applied now
	Err     error  // nil: it holds Serial
	Code    string // the Error code when it refused (MANIFEST_STALE, MANIFEST_REFUSED), else ""
}

// PushManifest sends updates (oldest first, consecutive serials) to the dealer and to every
// node, and returns each one's answer, dealer first. The dealer also queues them on every
// node's durable control queue, so that a node that is down now applies them when it is back.
// The client must be an admin client.
func (c *Client) PushManifest(ctx context.Context, updates []*trust.Update) ([]MemberManifest, error) {
	if err := c.may(tchsmpb.BodyType_BODY_TYPE_MANIFEST_PUSH, "pushing a manifest update"); err != nil {
		return nil, err
	}
	if len(updates) == 0 || len(updates) > trust.MaxChain {
		return nil, fmt.Errorf("%w: %d updates (1 to %d)", ErrInvalidInput, len(updates), trust.MaxChain)
	}
	pbs, err := trust.UpdatesProto(updates)
	if err != nil {
		return nil, err
	}
	ctx, cancel := withDefault(ctx, c.signTimeout())
	defer cancel()
	push := &tchsmpb.ManifestPush{Updates: pbs}
	type target struct {
		mem trust.Member
		at  transport.Address
	}
	var targets []target
	for _, d := range c.m.Dealers {
		targets = append(targets, target{d, transport.Dealer})
	}
	for _, n := range c.m.Nodes {
		targets = append(targets, target{n, transport.Node(n.ID)})
	}
	out := make([]MemberManifest, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			r := MemberManifest{ID: t.mem.ID}
			op, err := c.rawCall(ctx, t.mem, t.at, push)
			switch st, ok := opMessage[*tchsmpb.ManifestState](op, err); {
			case err != nil:
				r.Err = err
				var re *rpc.Error
				if errors.As(err, &re) {
					r.Code = re.Code.String()
				}
			case !ok:
				r.Err = fmt.Errorf("%s answered %v", t.mem.ID, op.Type)
			default:
				r.Serial, r.Hash, r.Applied = st.GetSerial(), st.GetHash(), int(st.GetApplied())
			}
			out[i] = r
		})
	}
	wg.Wait()
	return out, nil
}

// opMessage is op's message as a T.
func opMessage[T any](op *trust.Opened, err error) (T, bool) {
	var zero T
	if err != nil || op == nil {
		return zero, false
	}
	m, ok := op.Message.(T)
	return m, ok
}

// FetchManifest asks the dealer and the nodes for the updates after serial have and returns
// the longest chain among their answers that applies to cur (trust.ApplyChain: each step
// checked under the manifest before it), with the manifest it reaches. No member ahead of
// have returns no updates and a nil error.
func (c *Client) FetchManifest(ctx context.Context, cur *trust.Manifest) ([]*trust.Update, *trust.Manifest, error) {
	ctx, cancel := withDefault(ctx, c.signTimeout())
	defer cancel()
	members := append(slices.Clone(c.m.Dealers), c.m.Nodes...)
	chains := make([][]*trust.Update, len(members))
	errs := make([]string, len(members))
	var wg sync.WaitGroup
	for i, mem := range members {
		at := transport.Dealer
		if mem.Role == trust.RoleNode {
			at = transport.Node(mem.ID)
		}
		wg.Go(func() {
			op, err := c.rawCall(ctx, mem, at, &tchsmpb.ManifestFetch{Have: cur.Serial})
			ch, ok := opMessage[*tchsmpb.ManifestChain](op, err)
			if !ok {
				errs[i] = fmt.Sprintf("%s: %v", mem.ID, err)
				return
			}
			ups, err := trust.UpdatesFromProto(ch.GetUpdates())
			if err != nil {
				errs[i] = fmt.Sprintf("%s: %v", mem.ID, err)
				return
			}
			chains[i] = ups
		})
	}
	wg.Wait()
	var best []*trust.Update
	reached := cur
	var refusals []string
	for i, ch := range chains {
		if len(ch) == 0 {
			continue
		}
		m, applied, err := trust.ApplyChain(cur, ch)
		if err != nil && !errors.Is(err, trust.ErrManifestStale) {
			refusals = append(refusals, fmt.Sprintf("%s: %v", members[i].ID, err))
		}
		if m.Serial > reached.Serial {
			best, reached = applied, m
		}
	}
	if len(best) == 0 && len(refusals) > 0 {
		return nil, cur, fmt.Errorf("%w: no update applies: %s", ErrUnavailable, strings.Join(refusals, "; "))
	}
	return best, reached, nil
}

// strangerRefusal reports whether err is a node's refusal of the request because its sender,
// this client, is not in the node's manifest: revoked by a manifest update (or never added).
func strangerRefusal(err error) bool {
	var re *transport.RemoteError
	return errors.As(err, &re) && strings.Contains(re.Msg, trust.ErrUnknownSender.Error())
}
