package rpc

import (
	"errors"
	"log/slog"

	"github.com/tchsm/tchsm/internal/trust"
	tchsmpb "github.com/tchsm/tchsm/proto"
)

// ApplyPush serves a ManifestPush for a process that trusts t (a node, the dealer): the updates
// are applied under t's manifest (trust.Trusted.Apply: checked step by step, written to the
// manifest file, then swapped in). The answer is the state reached; a push of what t holds
// already is answered with that state too (nothing applied); one older than that with
// MANIFEST_STALE, one the rules refuse with MANIFEST_REFUSED, a failure to write with INTERNAL.
func ApplyPush(self string, t *trust.Trusted, log *slog.Logger, sender string, p *tchsmpb.ManifestPush) (*tchsmpb.ManifestState, *Failure) {
	ups, err := trust.UpdatesFromProto(p.GetUpdates())
	if err != nil {
		return nil, Fail(tchsmpb.Error_MANIFEST_REFUSED, "", "%s: %v", self, err)
	}
	if len(ups) == 0 {
		return nil, Fail(tchsmpb.Error_BAD_REQUEST, "", "an empty manifest push")
	}
	applied, err := t.Apply(ups)
	cur := t.Manifest()
	st := &tchsmpb.ManifestState{Member: self, Serial: cur.Serial, Hash: cur.Hash(), Applied: uint32(len(applied))}
	switch {
	case err == nil:
		log.Info("manifest update applied", "from", sender, "applied", len(applied), "serial", cur.Serial)
		return st, nil
	case len(applied) > 0:
		log.Warn("manifest push applied in part", "from", sender, "applied", len(applied), "serial", cur.Serial, "reason", err.Error())
		return st, nil
	case errors.Is(err, trust.ErrManifestStale):
		if ups[len(ups)-1].Manifest.Hash() == cur.Hash() {
			return st, nil // held already (the dealer's copy came first, or a push again)
		}
		return nil, Fail(tchsmpb.Error_MANIFEST_STALE, "", "%s holds manifest serial %d: %v", self, cur.Serial, err)
	case errors.Is(err, trust.ErrManifestRefused):
		log.Warn("manifest update refused", "from", sender, "serial", cur.Serial, "reason", err.Error())
		return nil, Fail(tchsmpb.Error_MANIFEST_REFUSED, "", "%s (serial %d): %v", self, cur.Serial, err)
	default:
		log.Error("manifest update not written", "err", err)
		return nil, Fail(tchsmpb.Error_INTERNAL, "", "%s could not write its manifest", self)
	}
}

// ManifestChain serves a ManifestFetch: the updates t keeps after the asked serial.
func ManifestChain(self string, t *trust.Trusted, f *tchsmpb.ManifestFetch) (*tchsmpb.ManifestChain, *Failure) {
	ups, incomplete := t.Since(f.GetHave())
	pbs, err := trust.UpdatesProto(ups)
	if err != nil {
		return nil, Fail(tchsmpb.Error_INTERNAL, "", "encoding updates")
	}
	return &tchsmpb.ManifestChain{Member: self, Serial: t.Manifest().Serial, Updates: pbs, Incomplete: incomplete}, nil
}
