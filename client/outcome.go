package client

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tchsm/tchsm/internal/trust"
)

// outcome is what went wrong during one Sign call, for its error: the nodes' failures in
// order, how many said the key is unknown, and which refused under their signing policy.
type outcome struct {
	failures []string
	unknown  int          // nodes that answered "unknown key"
	refused  map[int]bool // nodes whose signing policy refused: not failing, not asked again
	// nodes that refused for want of a login (NOT_LOGGED_IN) or because the client is locked
	// (PIN_LOCKED)
	notLoggedIn, locked int
	// strangers counts the nodes that refused the client as a sender they do not know: its
	// identity is not in their manifest (revoked by a manifest update).
	strangers map[int]bool
}

// note records a node's failure.
func (o *outcome) note(n trust.Member, err error) {
	switch {
	case errors.Is(err, ErrKeyNotFound):
		o.unknown++
	case errors.Is(err, ErrPINLocked):
		o.locked++
	case errors.Is(err, ErrNotLoggedIn):
		o.notLoggedIn++
	case strangerRefusal(err):
		// Not asked again for this signature, like a policy refusal: the node will refuse
		// this client until its manifest lists it again.
		if o.strangers == nil {
			o.strangers = map[int]bool{}
		}
		if o.refused == nil {
			o.refused = map[int]bool{}
		}
		o.strangers[n.Index], o.refused[n.Index] = true, true
	}
	o.failures = append(o.failures, fmt.Sprintf("%s: %v", n.ID, err))
}

// refuse records a node whose signing policy refused the signature. It is not a fault: the
// node is not marked failing, and the signature goes on with the others.
func (o *outcome) refuse(n trust.Member, err error) {
	if o.refused == nil {
		o.refused = map[int]bool{}
	}
	o.refused[n.Index] = true
	o.failures = append(o.failures, fmt.Sprintf("%s: %v", n.ID, err))
}

// hopeless reports that more than n-k nodes refused: fewer than k can sign.
func (o *outcome) hopeless(k *key, K int) bool { return len(o.refused) > k.info.L-K }

// giveUp is the error of a Sign call on key k that ends with held of K shares. When more than
// n-k nodes say the key does not exist, it is gone (deleted by another client): c forgets it.
// When the client knows that fewer than K nodes answer (liveness.go), the error says so, with
// the nodes that answer and those that do not, rather than listing every failed request.
func (o *outcome) giveUp(c *Client, k *key, held, K int, cause error) error {
	L := k.info.L
	if len(o.strangers) > L-K {
		return fmt.Errorf("%w: %d of %d nodes refuse client %s as a sender not in their manifest: it was removed from the cluster (a manifest update revoked it); key %s not signed",
			ErrRevoked, len(o.strangers), L, c.self.ID, k.info.ID)
	}
	if o.unknown <= L-K && !o.hopeless(k, K) {
		if err := c.short(K); err != nil {
			return fmt.Errorf("%w; key %s not signed (%d of %d shares)", err, k.info.ID, held, K)
		}
	}
	msg := fmt.Sprintf("%d of %d shares for key %s", held, K, k.info.ID)
	if len(o.failures) > 0 {
		msg += " (" + strings.Join(o.failures, "; ") + ")"
	}
	if cause != nil {
		msg += ": " + cause.Error()
	}
	if o.hopeless(k, K) {
		return fmt.Errorf("%w: %d of %d nodes refused, a signature needs %d: %s", ErrPolicyRefused, len(o.refused), L, K, msg)
	}
	if o.locked > L-K {
		return fmt.Errorf("%w: %s", ErrPINLocked, msg)
	}
	if o.locked+o.notLoggedIn > L-K {
		return fmt.Errorf("%w: %s", ErrNotLoggedIn, msg)
	}
	if o.unknown > L-K {
		c.mu.Lock()
		delete(c.keys, k.info.ID)
		c.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrKeyNotFound, msg)
	}
	return fmt.Errorf("%w: %s", ErrNotEnoughNodes, msg)
}
