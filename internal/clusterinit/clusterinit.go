// Package clusterinit creates a cluster's files: what `tchsm init` and `tchsm dev up` write.
//
// Layout of DIR:
//
//	manifest.json                  the root of trust (public keys, roles, threshold)
//	nodes/node-I/node.json         node I's configuration
//	nodes/node-I/identity.json     node I's identity, encrypted with its passphrase (0600)
//	nodes/node-I/shares.db         node I's share store (created by the node)
//	nodes/node-I/initial-pins.json with Options.PIN: every client's first PIN, HPKE-encrypted to
//	                               node I (trust.InitialPINs); the node installs them in its
//	                               store at its first start (0600)
//	secrets/node-I.passphrase      node I's passphrase (0600, folder 0700): outside the node's
//	                               folder, so that a copy of that folder does not decrypt its
//	                               shares; give it to the node as a systemd credential or a
//	                               container secret and remove it from here
//	dealer/dealer.json, dealer/identity.json (0600)
//	clients/client-J/client.json, clients/client-J/identity.json (0600): admin clients
//	clients/signer-J/client.json, clients/signer-J/identity.json (0600): signer clients
//	admin/admin-J.key (0600, folder 0700): the manifest admins' keys (Options.Admins, default
//	                               one): they sign manifest updates (tchsm manifest sign) and
//	                               belong offline; move them out of here before going live
//	broker/definitions.json        with BrokerUsers: the broker users, their permissions, the
//	                               exchanges and control queues (0600; `tchsm broker setup`
//	                               imports it with rabbitmqctl import_definitions)
//	broker/rabbitmq.conf           with BrokerUsers: the broker settings (max_message_size)
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
	tchsmpb "github.com/tchsm/tchsm/proto"
)

// Options says what cluster to create.
type Options struct {
	ClusterID string // "" means a random one
	K, N      int
	Clients   int // admin client identities client-1.. (default 1)
	Signers   int // signer client identities signer-1.. (default 0)
	// AMQPURL is written into every config, as url for one broker or urls for a
	// comma-separated list of them; "" leaves it to $TCHSM_AMQP_URL or the default.
	AMQPURL string
	// LocalDealer makes client configs deal keys in-process with the dealer's config instead of
	// asking the dealer service.
	LocalDealer bool
	// OneHost says every node will run on this one machine (tchsm dev up, test clusters): the
	// client configs then get batch_window 1. Nodes that share the same cores gain nothing from
	// a second message in flight to one node, while fewer, larger batches save CPU for shares.
	OneHost bool
	// BrokerUsers gives every node, the dealer and every client a broker user of its own,
	// with the permissions of its role (docs/broker-permissions.md): the URLs in the configs
	// carry that user and a random password instead of AMQPURL's account (which then only
	// names the brokers, the vhost and the scheme), and broker/definitions.json creates them.
	// Without it every role uses AMQPURL's account.
	BrokerUsers bool
	// PIN, when set, is every client's first user PIN: each node gets it, encrypted to the
	// node alone, in initial-pins.json, and checks it from its first start (node/login.go).
	// Without it the nodes hold no PIN until `tchsm pin set`, and serve the clients without a
	// login. The PIN is written nowhere in clear, and nowhere on the clients' side.
	PIN string
	// Admins is the number of manifest admin keys to make (admin-1..; default 1), of which
	// AdminThreshold (default 1) must sign every manifest update; -1 makes none (a manifest
	// that takes no update, as before manifest updates existed).
	Admins, AdminThreshold int
}

// Layout names the files Create wrote.
type Layout struct {
	Dir      string
	Manifest string
	Nodes    []string // node config paths, index i-1 for node i
	Dealer   string   // dealer config path
	Clients  []string // admin client config paths
	Signers  []string // signer client config paths
	// BrokerDefinitions is broker/definitions.json (with Options.BrokerUsers), else "".
	BrokerDefinitions string
	// AdminKeys are the manifest admins' key files (admin/admin-J.key).
	AdminKeys []string
}

// ErrExists is returned when DIR already holds a manifest.
var ErrExists = errors.New("clusterinit: a cluster already exists in that folder")

// NodeID, DealerID and ClientID are the identity ids Create uses.
func NodeID(i int) string   { return fmt.Sprintf("node-%d", i) }
func ClientID(j int) string { return fmt.Sprintf("client-%d", j) }
func SignerID(j int) string { return fmt.Sprintf("signer-%d", j) }

const DealerID = "dealer"

// Create writes a new cluster into dir (created if missing).
func Create(dir string, o Options) (*Layout, error) {
	if o.Clients == 0 {
		o.Clients = 1
	}
	if o.N < 1 || o.N > trust.MaxNodes || o.K < 1 || o.K > o.N {
		return nil, fmt.Errorf("clusterinit: need 1 <= k <= n <= %d, got k=%d n=%d", trust.MaxNodes, o.K, o.N)
	}
	if o.ClusterID == "" {
		b := make([]byte, 4)
		rand.Read(b)
		o.ClusterID = "c" + hex.EncodeToString(b)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	l := &Layout{Dir: dir, Manifest: filepath.Join(dir, "manifest.json")}
	if _, err := os.Stat(l.Manifest); err == nil {
		return nil, fmt.Errorf("%w: %s", ErrExists, dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	m := &trust.Manifest{Version: 1, ClusterID: o.ClusterID, Threshold: o.K}
	amqp := config.AMQP{URL: o.AMQPURL}
	if urls := config.SplitURLs(o.AMQPURL); len(urls) > 1 {
		amqp = config.AMQP{URLs: urls}
	}
	// roleAMQP is the amqp section of one role's config.
	roleAMQP := func(rabbitmq.Permission, error) (config.AMQP, error) { return amqp, nil }
	var accounts *brokerAccounts
	if o.BrokerUsers {
		if amqp.URL == "" && len(amqp.URLs) == 0 {
			amqp.URL = config.DefaultAMQPURL
		}
		if accounts, err = newBrokerAccounts(amqp); err != nil {
			return nil, err
		}
		roleAMQP = accounts.add
	}
	for i := 1; i <= o.N; i++ {
		nd := filepath.Join(dir, "nodes", NodeID(i))
		if err := os.MkdirAll(nd, 0o700); err != nil {
			return nil, err
		}
		id, err := trust.NewIdentity(NodeID(i), trust.RoleNode)
		if err != nil {
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
		if err := os.WriteFile(filepath.Join(dir, "secrets", NodeID(i)+".passphrase"), append(phrase, '\n'), 0o600); err != nil {
			return nil, err
		}
		if err := trust.WriteIdentityFile(filepath.Join(nd, "identity.json"), id, phrase); err != nil {
			return nil, err
		}
		mem := id.Public()
		mem.Index = i
		m.Nodes = append(m.Nodes, mem)
		na, err := roleAMQP(rabbitmq.NodePermission(o.ClusterID, NodeID(i)))
		if err != nil {
			return nil, err
		}
		cfg := config.Node{AMQP: na, Manifest: "../../manifest.json", Identity: "identity.json",
			Store: "shares.db", PassphraseFile: filepath.Join("..", "..", "secrets", NodeID(i)+".passphrase")}
		p := filepath.Join(nd, "node.json")
		if err := config.Save(p, cfg, 0o600); err != nil {
			return nil, err
		}
		l.Nodes = append(l.Nodes, p)
	}
	dd := filepath.Join(dir, "dealer")
	if err := os.MkdirAll(dd, 0o700); err != nil {
		return nil, err
	}
	did, err := trust.NewIdentity(DealerID, trust.RoleDealer)
	if err != nil {
		return nil, err
	}
	if err := trust.WriteIdentityFile(filepath.Join(dd, "identity.json"), did, nil); err != nil {
		return nil, err
	}
	m.Dealers = append(m.Dealers, did.Public())
	l.Dealer = filepath.Join(dd, "dealer.json")
	da, err := roleAMQP(rabbitmq.DealerPermission(o.ClusterID))
	if err != nil {
		return nil, err
	}
	if err := config.Save(l.Dealer, config.Dealer{AMQP: da, Manifest: "../manifest.json", Identity: "identity.json"}, 0o600); err != nil {
		return nil, err
	}
	for j := 1; j <= o.Clients+o.Signers; j++ {
		name, role := ClientID(j), trust.ClientRoleAdmin
		if j > o.Clients {
			name, role = SignerID(j-o.Clients), trust.ClientRoleSigner
		}
		cd := filepath.Join(dir, "clients", name)
		if err := os.MkdirAll(cd, 0o700); err != nil {
			return nil, err
		}
		id, err := trust.NewIdentity(name, trust.RoleClient)
		if err != nil {
			return nil, err
		}
		if err := trust.WriteIdentityFile(filepath.Join(cd, "identity.json"), id, nil); err != nil {
			return nil, err
		}
		mem := id.Public()
		mem.ClientRole = role
		m.Clients = append(m.Clients, mem)
		ca, err := roleAMQP(rabbitmq.ClientPermission(o.ClusterID, name))
		if err != nil {
			return nil, err
		}
		cfg := config.Client{AMQP: ca, Manifest: "../../manifest.json", Identity: "identity.json"}
		if o.LocalDealer && role == trust.ClientRoleAdmin {
			cfg.DealerConfig = "../../dealer/dealer.json"
		}
		if o.OneHost {
			cfg.BatchWindow = 1
		}
		p := filepath.Join(cd, "client.json")
		if err := config.Save(p, cfg, 0o600); err != nil {
			return nil, err
		}
		if role == trust.ClientRoleAdmin {
			l.Clients = append(l.Clients, p)
		} else {
			l.Signers = append(l.Signers, p)
		}
	}
	if err := addAdmins(l, m, o.Admins, o.AdminThreshold); err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if o.PIN != "" {
		if err := writeInitialPINs(l, m, o.PIN); err != nil {
			return nil, err
		}
	}
	if accounts != nil {
		ids := make([]string, len(m.Nodes))
		for i, n := range m.Nodes {
			ids[i] = n.ID
		}
		if l.BrokerDefinitions, err = accounts.write(dir, o.ClusterID, ids); err != nil {
			return nil, err
		}
	}
	if err := m.Save(l.Manifest); err != nil {
		return nil, err
	}
	return l, nil
}

// AdminID is the id of the j-th manifest admin Create makes.
func AdminID(j int) string { return fmt.Sprintf("admin-%d", j) }

// addAdmins makes n admin keys (0: one; -1: none) with threshold t (0: one) into dir/admin.
func addAdmins(l *Layout, m *trust.Manifest, n, t int) error {
	switch {
	case n < 0:
		return nil
	case n == 0:
		n = 1
	}
	if t == 0 {
		t = 1
	}
	if n > trust.MaxAdmins || t < 1 || t > n {
		return fmt.Errorf("clusterinit: %d admins with threshold %d (want 1 <= threshold <= admins <= %d)", n, t, trust.MaxAdmins)
	}
	ad := filepath.Join(l.Dir, "admin")
	if err := os.MkdirAll(ad, 0o700); err != nil {
		return err
	}
	for j := 1; j <= n; j++ {
		k, err := trust.NewAdminKey(AdminID(j))
		if err != nil {
			return err
		}
		p := filepath.Join(ad, AdminID(j)+".key")
		if err := trust.WriteAdminKeyFile(p, k); err != nil {
			return err
		}
		m.Admins = append(m.Admins, k.Public())
		l.AdminKeys = append(l.AdminKeys, p)
	}
	m.AdminThreshold = t
	return nil
}

// InitialPINsFile is the name of a node's initial PINs file in its folder.
const InitialPINsFile = "initial-pins.json"

// writeInitialPINs gives every node the PIN of every client, sealed to that node, and names
// the file in the node's config.
func writeInitialPINs(l *Layout, m *trust.Manifest, userPIN string) error {
	for i, nd := range m.Nodes {
		if err := writeNodePINs(l.Nodes[i], m, nd, userPIN); err != nil {
			return err
		}
	}
	return nil
}

// writeNodePINs writes one node's initial PINs file beside its config and names it there.
func writeNodePINs(cfgPath string, m *trust.Manifest, nd trust.Member, userPIN string) error {
	f := trust.InitialPINs{Version: 1, Node: nd.ID, Clients: map[string]trust.SealedPIN{}}
	for _, c := range m.Clients {
		enc, ct, key, err := trust.SealPIN(nd, m.ClusterID, c.ID, trust.PINPurposeInitial, &tchsmpb.PINSecret{Pin: []byte(userPIN)})
		clear(key)
		if err != nil {
			return err
		}
		f.Clients[c.ID] = trust.SealedPIN{Enc: enc, Ciphertext: ct}
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(cfgPath), InitialPINsFile), append(b, '\n'), 0o600); err != nil {
		return err
	}
	raw := map[string]any{}
	if err := readJSON(cfgPath, &raw); err != nil {
		return err
	}
	raw["initial_pins"] = InitialPINsFile
	return config.Save(cfgPath, raw, 0o600)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
