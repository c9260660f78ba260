package clusterinit

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/transport/rabbitmq"
	"github.com/tchsm/tchsm/internal/trust"
)

// Replaced says what ReplaceNode wrote.
type Replaced struct {
	Index        int
	OldID, NewID string
	NodeConfig   string // the new node's config (nodes/NEW-ID/node.json)
	Passphrase   string // secrets/NEW-ID.passphrase
	Manifest     string // the edited manifest
	Previous     string // the manifest as it was, kept beside it
	// BrokerUser is set when the cluster has broker users (DIR/broker/definitions.json): the
	// new node's user, added to the definitions (import them again: tchsm broker setup) in
	// place of OldBrokerUser, which the operator deletes from the broker.
	BrokerUser, OldBrokerUser string
}

// ReplaceNode gives node index a new identity in the cluster folder dir that Create wrote: a
// new node folder nodes/NEW-ID (identity, store passphrase in secrets/, node.json with the
// old node's amqp section when its config is still there), and the manifest with the new
// identity at index in place of the old one (the previous manifest kept as
// manifest.json.before-NEW-ID). newID "" means NodeID(index) followed by 4 random hex digits.
// With userPIN, the new node gets every client's initial PIN, as Create gives them.
//
// Only the manifest file in dir changes: every process must be given the new manifest and
// restarted, and then the keys reshared (`tchsm keys reshare -all`). The old identity is then
// unknown to every process, which refuses its messages and ignores its endorsements.
func ReplaceNode(dir string, index int, newID, userPIN string) (*Replaced, error) {
	mpath := filepath.Join(dir, "manifest.json")
	m, err := trust.LoadManifest(mpath)
	if err != nil {
		return nil, err
	}
	old, ok := m.NodeByIndex(index)
	if !ok {
		return nil, fmt.Errorf("clusterinit: the manifest has no node of index %d (1..%d)", index, m.N())
	}
	if newID == "" {
		b := make([]byte, 2)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		newID = NodeID(index) + "-" + hex.EncodeToString(b)
	}
	if _, taken := m.Lookup(newID); taken {
		return nil, fmt.Errorf("clusterinit: %s is in the manifest already: a replacement needs a new id", newID)
	}
	r := &Replaced{Index: index, OldID: old.ID, NewID: newID, Manifest: mpath, Previous: mpath + ".before-" + newID}
	nd := filepath.Join(dir, "nodes", newID)
	if _, err := os.Stat(nd); err == nil {
		return nil, fmt.Errorf("clusterinit: %s exists", nd)
	}
	id, err := trust.NewIdentity(newID, trust.RoleNode)
	if err != nil {
		return nil, err
	}
	mem := id.Public()
	mem.Index = index
	// The edited manifest is the next one in the cluster's history (serial + 1, naming the one
	// it replaces), as a signed update would be (trust.Accept); it is installed by copying the
	// file and restarting, so it carries no admin signature: the admins' offline copy must be
	// replaced by it too (docs/operations/replace-node.md), or their next update is refused.
	m.Serial, m.Previous = m.Serial+1, m.Hash()
	for i := range m.Nodes {
		if m.Nodes[i].Index == index {
			m.Nodes[i] = mem
		}
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(nd, 0o700); err != nil {
		return nil, err
	}
	pass := make([]byte, 24)
	if _, err := rand.Read(pass); err != nil {
		return nil, err
	}
	phrase := []byte(base64.RawURLEncoding.EncodeToString(pass))
	if err := os.MkdirAll(filepath.Join(dir, "secrets"), 0o700); err != nil {
		return nil, err
	}
	r.Passphrase = filepath.Join(dir, "secrets", newID+".passphrase")
	if err := os.WriteFile(r.Passphrase, append(phrase, '\n'), 0o600); err != nil {
		return nil, err
	}
	if err := trust.WriteIdentityFile(filepath.Join(nd, "identity.json"), id, phrase); err != nil {
		return nil, err
	}
	cfg := config.Node{Manifest: "../../manifest.json", Identity: "identity.json", Store: "shares.db",
		PassphraseFile: filepath.Join("..", "..", "secrets", newID+".passphrase")}
	var oc config.Node
	if err := config.Load(filepath.Join(dir, "nodes", old.ID, "node.json"), &oc); err == nil {
		cfg.AMQP = oc.AMQP
	} else {
		var dc config.Dealer
		if err := config.Load(filepath.Join(dir, "dealer", "dealer.json"), &dc); err == nil {
			cfg.AMQP = dc.AMQP // the brokers' URLs; with broker users the account is replaced below
		}
	}
	if r.BrokerUser, r.OldBrokerUser, err = replaceBrokerUser(dir, m.ClusterID, old.ID, newID, &cfg.AMQP); err != nil {
		return nil, err
	}
	r.NodeConfig = filepath.Join(nd, "node.json")
	if err := config.Save(r.NodeConfig, cfg, 0o600); err != nil {
		return nil, err
	}
	if userPIN != "" {
		if err := writeNodePINs(r.NodeConfig, m, mem, userPIN); err != nil {
			return nil, err
		}
	}
	prev, err := os.ReadFile(mpath)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(r.Previous, prev, 0o644); err != nil {
		return nil, err
	}
	if err := m.Save(mpath); err != nil {
		return nil, err
	}
	return r, nil
}

// replaceBrokerUser, for a cluster with broker users, gives the new node a broker user of its
// own (a node's permissions name its id): it rewrites a (the new node's amqp section) to log in
// as it, and puts the user, its permissions and the new node's control queues into
// DIR/broker/definitions.json in place of the old node's user. Without a definitions file it
// does nothing.
func replaceBrokerUser(dir, clusterID, oldID, newID string, a *config.AMQP) (user, oldUser string, err error) {
	path := filepath.Join(dir, "broker", BrokerDefinitions)
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", "", nil
	}
	if err != nil {
		return "", "", err
	}
	var defs map[string]any
	if err := json.Unmarshal(raw, &defs); err != nil {
		return "", "", fmt.Errorf("clusterinit: %s: %v", path, err)
	}
	accounts, err := newBrokerAccounts(*a)
	if err != nil {
		return "", "", err
	}
	na, err := accounts.add(rabbitmq.NodePermission(clusterID, newID))
	if err != nil {
		return "", "", err
	}
	op, err := rabbitmq.NodePermission(clusterID, oldID)
	if err != nil {
		return "", "", err
	}
	part, err := rabbitmq.Definitions(accounts.vhost, clusterID, []string{newID}, accounts.accounts)
	if err != nil {
		return "", "", err
	}
	var add map[string]any
	if err := json.Unmarshal(part, &add); err != nil {
		return "", "", err
	}
	for _, key := range []string{"users", "permissions", "topic_permissions", "queues", "bindings"} {
		var kept []any
		list, _ := defs[key].([]any)
		for _, item := range list {
			o, _ := item.(map[string]any)
			if o != nil && (o["name"] == op.User || o["user"] == op.User) {
				continue // the old node's user and its permissions
			}
			kept = append(kept, item)
		}
		more, _ := add[key].([]any)
		defs[key] = append(kept, more...)
	}
	out, err := json.MarshalIndent(defs, "", "  ")
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(path, append(out, '\n'), 0o600); err != nil {
		return "", "", err
	}
	*a = na
	return accounts.accounts[0].User, op.User, nil
}
