package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tchsm/tchsm/client"
	"github.com/tchsm/tchsm/internal/clusterinit"
	"github.com/tchsm/tchsm/scheme"
)

// replaceDoc is the operator's page for replacing a node.
const replaceDoc = "docs/operations/replace-node.md"

// runNodeReplace: `tchsm node replace -dir DIR -index I [-id NEW-ID] [-pin-file FILE]` puts a
// new node identity at index I of the cluster folder's manifest (clusterinit.ReplaceNode) and
// says what the operator does next: install the manifest everywhere, restart, reshare.
func runNodeReplace(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "node replace", "node replace -dir DIR -index I [-id NEW-ID] [-pin-file FILE]")
	dir := fs.String("dir", "", "the cluster folder tchsm init wrote (required): its manifest.json is edited")
	index := fs.Int("index", 0, "the index (1..n) of the node to replace (required)")
	id := fs.String("id", "", "the new node's identity id (default: node-I- and 4 random hex digits; never the old id)")
	pinFile := fs.String("pin-file", "", "file holding every client's user PIN, installed on the new node as tchsm init does (else the new node checks no PIN until tchsm pin set)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *index < 1 || fs.NArg() != 0 {
		fs.Usage()
		return errUsage
	}
	var userPIN string
	if *pinFile != "" {
		p, err := readPIN(e, *pinFile, EnvNewPIN, "")
		if err != nil {
			return err
		}
		userPIN = string(p)
		clear(p)
	}
	r, err := clusterinit.ReplaceNode(*dir, *index, *id, userPIN)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, `node %d is now %s (it was %s) in %s
  previous manifest:   %s
  new node's config:   %s
  its passphrase:      %s (give it to the node as a credential, then delete it here)
`, r.Index, r.NewID, r.OldID, r.Manifest, r.Previous, r.NodeConfig, r.Passphrase)
	if r.BrokerUser != "" {
		fmt.Fprintf(e.stdout, "  broker user:         %s replaces %s in broker/definitions.json: run `tchsm broker setup -dir %s`,\n"+
			"                       then delete the old user: rabbitmqctl delete_user %s\n", r.BrokerUser, r.OldBrokerUser, *dir, r.OldBrokerUser)
	}
	if userPIN == "" {
		fmt.Fprintf(e.stdout, "  no -pin-file: the new node checks no user PIN until `tchsm pin set` for every client\n")
	}
	fmt.Fprintf(e.stdout, `
Next:
  1. install %s on every node, the dealer and every client host, and restart
     each process (the old identity %s is refused from then on);
  2. start the new node (tchsm node -config %s), with an empty store;
  3. tchsm keys reshare -all     (every Ed25519 key gets new shares on all nodes; it lists the RSA
     keys, which need a DNSSEC key rollover)
See %s.
`, r.Manifest, r.OldID, r.NodeConfig, replaceDoc)
	return nil
}

// keysReshare: `tchsm keys reshare [-all] [-plan] [KEY-ID...]`: reshares the Ed25519 keys named
// (or all of them) to the nodes of the manifest, and says which keys cannot be reshared (RSA:
// a DNSSEC key rollover). With -plan it only says what each key needs.
func keysReshare(ctx context.Context, e *env, c *client.Client, all, plan bool, ids []string, pinFile string) error {
	if !all && len(ids) == 0 {
		return fmt.Errorf("keys reshare needs key ids, or -all")
	}
	keys, err := c.Keys(ctx)
	if err != nil {
		return err
	}
	byID := map[string]client.KeyInfo{}
	for _, k := range keys {
		byID[k.ID] = k
	}
	var todo []client.KeyInfo
	if all {
		todo = keys
		// Keys the nodes hold whose records no client accepts any more: generated keys endorsed
		// by k nodes of which some were replaced. A resharing gives them a record again.
		sts, err := c.Status(ctx)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, st := range sts {
			for _, id := range st.Keys {
				if _, ok := byID[id]; !ok && !seen[id] {
					seen[id] = true
					todo = append(todo, client.KeyInfo{ID: id, Label: "(record endorsed by replaced nodes)", Algorithm: scheme.Ed25519FROST})
				}
			}
		}
	} else {
		for _, id := range ids {
			k, ok := byID[id]
			if !ok {
				// Perhaps a generated key whose record lacks k endorsements by nodes of the
				// manifest now: ReshareKey finds it on the nodes, or says why not.
				k = client.KeyInfo{ID: id, Label: "(not listed)", Algorithm: scheme.Ed25519FROST}
			}
			todo = append(todo, k)
		}
	}
	var ed, rsa []client.KeyInfo
	for _, k := range todo {
		if k.Algorithm == scheme.Ed25519FROST {
			ed = append(ed, k)
		} else {
			rsa = append(rsa, k)
		}
	}
	printTreatment(e.stdout, ed, rsa)
	if plan || len(ed) == 0 {
		return nil
	}
	if err := login(ctx, e, c, pinFile); err != nil {
		return err
	}
	var failed []string
	for _, k := range ed {
		t0 := time.Now()
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		res, err := c.ReshareKey(rctx, k.ID)
		cancel()
		if err != nil {
			fmt.Fprintf(e.stdout, "key %s (%s): NOT reshared: %v\n", k.ID, k.Label, err)
			failed = append(failed, k.ID)
			continue
		}
		fmt.Fprintf(e.stdout, "key %s (%s): reshared in %v, epoch %d; dealt by %s; new shares on %s\n",
			k.ID, k.Label, time.Since(t0).Round(time.Millisecond), res.Epoch, strings.Join(res.Dealers, ", "), strings.Join(res.Stored, ", "))
		if len(res.Missing) > 0 {
			fmt.Fprintf(e.stdout, "  not replaced on %s: reshare this key again\n", strings.Join(res.Missing, "; "))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d Ed25519 keys not reshared (%s): every node must answer; nothing changed for those keys; run again", len(failed), len(ed), strings.Join(failed, " "))
	}
	return nil
}

// printTreatment says what each key needs after a node was replaced.
func printTreatment(w io.Writer, ed, rsa []client.KeyInfo) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tLABEL\tALGORITHM\tTREATMENT")
	for _, k := range ed {
		fmt.Fprintf(tw, "%s\t%s\t%s\treshare (same public key, new shares on every node)\n", k.ID, k.Label, algName(k.Algorithm))
	}
	for _, k := range rsa {
		fmt.Fprintf(tw, "%s\t%s\t%s\tDNSSEC key rollover (the dealer forgot the key: a new key for the new nodes; this one signs on with the others until the signer retires it)\n",
			k.ID, k.Label, algName(k.Algorithm))
	}
	tw.Flush()
	if len(rsa) > 0 {
		fmt.Fprintf(w, "%d RSA key(s): roll each over with your signer (OpenDNSSEC: ods-enforcer key rollover --zone ZONE --keytype KSK|ZSK); see %s\n", len(rsa), replaceDoc)
	}
}
