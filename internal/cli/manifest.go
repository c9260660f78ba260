package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tchsm/tchsm/client"
	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/trust"
)

func init() {
	register("manifest", "change the cluster's membership by signed manifest updates (manifest add-client|revoke|set-role|replace-node|set-admins|sign|apply|push|fetch|status|show|member|new-admin|identity)", runManifest)
}

const manifestUsage = `Usage: tchsm manifest SUBCOMMAND [flags]

Build an update (offline, from a copy of the manifest; -out names the update file):
  add-client   -manifest M -id ID [-role signer|admin] (-identity NEW.json | -pub MEMBER.json) -out U
  revoke       -manifest M -id ID -out U           remove a client or a dealer
  set-role     -manifest M -id ID -role signer|admin -out U
  replace-node -manifest M -id NODE -pub MEMBER.json -out U   new keys for the node's index
  set-admins   -manifest M [-add ADMIN.json]... [-remove ID]... [-threshold T] -out U
Sign and check (offline, with the admin keys):
  sign         -in U -key ADMIN.key                 add one admin's signature (in place)
  apply        -manifest M -in U...                 check U under M and write M forward
Distribute (online, with an admin client's configuration, -config or $TCHSM_CONFIG):
  push         -in U...                             to the dealer and every node
  fetch                                             bring this client's manifest file forward
  status                                            the manifest serial every node holds
Inspect and make keys:
  show         -manifest M [-in U]                  what M holds, or what U changes in M
  member       -identity ID.json [-passphrase-file F]  an identity's public manifest entry
  new-admin    -id ID -out ADMIN.key                a new admin key (prints its public entry)
  identity     -id ID -role client|node -out ID.json [-passphrase-file F]
                                                    a new identity, made on the host that uses it
                                                    (prints its public entry, for -pub)

docs/operations/manifest.md and docs/operations/revoke-client.md say what each guarantees.`

func runManifest(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "help" {
		fmt.Fprintln(e.stderr, manifestUsage)
		return errUsage
	}
	sub, args := args[0], args[1:]
	fs := newFlags(e, "manifest "+sub, "manifest "+sub+" [flags]")
	fs.Usage = func() { fmt.Fprintln(e.stderr, manifestUsage) }
	mpath := fs.String("manifest", "", "the manifest file the update starts from")
	id := fs.String("id", "", "the member (or admin) concerned")
	role := fs.String("role", "signer", "add-client, set-role: the client role (signer or admin); identity: client or node")
	identity := fs.String("identity", "", "add-client: write a new client identity here (0600); member: the identity to read")
	pub := fs.String("pub", "", "add-client, replace-node: a member's public entry (JSON, from `tchsm manifest member`)")
	out := fs.String("out", "", "the file to write")
	var ins, adds, removes multiFlag
	fs.Var(&ins, "in", "an update file (push, apply: repeat for a chain, oldest first)")
	fs.Var(&adds, "add", "set-admins: an admin's public entry (JSON, from `tchsm manifest new-admin`); repeatable")
	fs.Var(&removes, "remove", "set-admins: an admin id to remove; repeatable")
	threshold := fs.Int("threshold", 0, "set-admins: admin signatures the next update needs (0: unchanged, at most the admins)")
	key := fs.String("key", "", "sign: the admin key file")
	passFile := fs.String("passphrase-file", "", "member, identity: the identity's passphrase file")
	cfgPath := clientConfigFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return errUsage
	}
	build := func(edit func(m *trust.Manifest) error) error {
		if *mpath == "" || *out == "" {
			return fmt.Errorf("%w: -manifest and -out are required", errUsage)
		}
		cur, err := trust.LoadManifest(*mpath)
		if err != nil {
			return err
		}
		next := cur.Clone()
		if err := edit(next); err != nil {
			return err
		}
		u, err := trust.NewUpdate(cur, next)
		if err != nil {
			return err
		}
		if err := trust.WriteUpdateFile(*out, u); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "update to serial %d written to %s (unsigned; needs %d of the admins' signatures: tchsm manifest sign -in %s -key ADMIN.key)\n",
			u.Serial(), *out, cur.AdminThreshold, *out)
		printDiff(e, cur, next)
		return nil
	}
	switch sub {
	case "add-client":
		return build(func(m *trust.Manifest) error {
			cr := trust.ClientRole(*role)
			if cr != trust.ClientRoleSigner && cr != trust.ClientRoleAdmin {
				return fmt.Errorf("-role %q: signer or admin", *role)
			}
			if _, ok := m.Lookup(*id); ok {
				return fmt.Errorf("%q is in the manifest already", *id)
			}
			var mem trust.Member
			switch {
			case *identity != "" && *pub == "":
				if _, err := os.Stat(*identity); err == nil {
					return fmt.Errorf("%s exists; not overwritten", *identity)
				}
				ident, err := trust.NewIdentity(*id, trust.RoleClient)
				if err != nil {
					return err
				}
				if err := trust.WriteIdentityFile(*identity, ident, nil); err != nil {
					return err
				}
				mem = ident.Public()
				fmt.Fprintf(e.stdout, "client identity %s written to %s (0600): give it to the client host with a client.json naming it\n", *id, *identity)
			case *pub != "" && *identity == "":
				var err error
				if mem, err = readMember(*pub); err != nil {
					return err
				}
				if mem.ID != *id || mem.Role != trust.RoleClient {
					return fmt.Errorf("%s is the entry of %s %s, not of client %s", *pub, mem.Role, mem.ID, *id)
				}
			default:
				return fmt.Errorf("%w: add-client needs -identity (a new identity) or -pub (a member entry)", errUsage)
			}
			mem.ClientRole = cr
			m.Clients = append(m.Clients, mem)
			return nil
		})
	case "revoke":
		return build(func(m *trust.Manifest) error {
			mem, ok := m.Lookup(*id)
			switch {
			case !ok:
				return fmt.Errorf("%q is not in the manifest", *id)
			case mem.Role == trust.RoleNode:
				return fmt.Errorf("%s is a node: a node's index stays (n is fixed); give it a new identity with replace-node", *id)
			case mem.Role == trust.RoleDealer:
				return fmt.Errorf("%s is a dealer: its key signs the key records the nodes hold, so a dealer cannot be removed yet", *id)
			}
			drop := func(l []trust.Member) []trust.Member {
				return slices.DeleteFunc(l, func(x trust.Member) bool { return x.ID == *id })
			}
			m.Clients = drop(m.Clients)
			return nil
		})
	case "set-role":
		return build(func(m *trust.Manifest) error {
			cr := trust.ClientRole(*role)
			if cr != trust.ClientRoleSigner && cr != trust.ClientRoleAdmin {
				return fmt.Errorf("-role %q: signer or admin", *role)
			}
			i := slices.IndexFunc(m.Clients, func(x trust.Member) bool { return x.ID == *id })
			if i < 0 {
				return fmt.Errorf("%q is not a client of the manifest", *id)
			}
			m.Clients[i].ClientRole = cr
			return nil
		})
	case "replace-node":
		return build(func(m *trust.Manifest) error {
			i := slices.IndexFunc(m.Nodes, func(x trust.Member) bool { return x.ID == *id })
			if i < 0 {
				return fmt.Errorf("%q is not a node of the manifest", *id)
			}
			if *pub == "" {
				return fmt.Errorf("%w: replace-node needs -pub (the new node's entry, from `tchsm manifest member`)", errUsage)
			}
			mem, err := readMember(*pub)
			if err != nil {
				return err
			}
			if mem.Role != trust.RoleNode {
				return fmt.Errorf("%s is a %s's entry, not a node's", *pub, mem.Role)
			}
			if mem.ID != *id {
				if _, taken := m.Lookup(mem.ID); taken {
					return fmt.Errorf("%q is in the manifest already", mem.ID)
				}
			}
			mem.Index = m.Nodes[i].Index
			m.Nodes[i] = mem
			return nil
		})
	case "set-admins":
		return build(func(m *trust.Manifest) error {
			for _, r := range removes {
				n := len(m.Admins)
				m.Admins = slices.DeleteFunc(m.Admins, func(a trust.Admin) bool { return a.ID == r })
				if len(m.Admins) == n {
					return fmt.Errorf("%q is not an admin", r)
				}
			}
			for _, p := range adds {
				a, err := readAdmin(p)
				if err != nil {
					return err
				}
				m.Admins = append(m.Admins, a)
			}
			if *threshold != 0 {
				m.AdminThreshold = *threshold
			}
			m.AdminThreshold = min(m.AdminThreshold, len(m.Admins))
			return nil
		})
	case "sign":
		if len(ins) != 1 || *key == "" {
			return fmt.Errorf("%w: sign needs one -in and -key", errUsage)
		}
		u, err := trust.ReadUpdateFile(ins[0])
		if err != nil {
			return err
		}
		k, err := trust.ReadAdminKeyFile(*key)
		if err != nil {
			return err
		}
		if err := u.Sign(k); err != nil {
			return err
		}
		if err := trust.WriteUpdateFile(ins[0], u); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s signed by %s: %d signature(s)\n", ins[0], k.ID, len(u.Signatures))
		if *mpath != "" {
			return checkUpdates(e, *mpath, ins, false)
		}
		return nil
	case "apply":
		if *mpath == "" || len(ins) == 0 {
			return fmt.Errorf("%w: apply needs -manifest and -in", errUsage)
		}
		return checkUpdates(e, *mpath, ins, true)
	case "show":
		if *mpath == "" {
			return fmt.Errorf("%w: show needs -manifest", errUsage)
		}
		cur, err := trust.LoadManifest(*mpath)
		if err != nil {
			return err
		}
		printManifest(e, cur)
		for _, in := range ins {
			u, err := trust.ReadUpdateFile(in)
			if err != nil {
				return err
			}
			next, err := trust.Accept(cur, u)
			if err != nil {
				fmt.Fprintf(e.stdout, "\n%s (serial %d): NOT accepted under serial %d: %v\n", in, u.Serial(), cur.Serial, err)
				printDiff(e, cur, u.Manifest)
				return nil
			}
			fmt.Fprintf(e.stdout, "\n%s: accepted, serial %d:\n", in, next.Serial)
			printDiff(e, cur, next)
			cur = next
		}
		return nil
	case "member":
		if *identity == "" {
			return fmt.Errorf("%w: member needs -identity", errUsage)
		}
		var pass []byte
		if *passFile != "" {
			b, err := os.ReadFile(*passFile)
			if err != nil {
				return err
			}
			pass = []byte(strings.TrimRight(string(b), "\r\n"))
			defer clear(pass)
		}
		ident, err := trust.ReadIdentityFile(*identity, pass)
		if err != nil {
			return err
		}
		b, err := json.MarshalIndent(ident.Public(), "", "  ")
		if err != nil {
			return err
		}
		return writeOrPrint(e, *out, append(b, '\n'))
	case "new-admin":
		if *id == "" || *out == "" {
			return fmt.Errorf("%w: new-admin needs -id and -out", errUsage)
		}
		if _, err := os.Stat(*out); err == nil {
			return fmt.Errorf("%s exists; not overwritten", *out)
		}
		k, err := trust.NewAdminKey(*id)
		if err != nil {
			return err
		}
		if err := trust.WriteAdminKeyFile(*out, k); err != nil {
			return err
		}
		b, _ := json.MarshalIndent(k.Public(), "", "  ")
		fmt.Fprintf(e.stderr, "admin key %s written to %s (0600): keep it offline; its public entry:\n", k.ID, *out)
		fmt.Fprintln(e.stdout, string(b))
		return nil
	case "identity":
		if *id == "" || *out == "" || (*role != "client" && *role != "node") {
			return fmt.Errorf("%w: identity needs -id, -role client|node and -out", errUsage)
		}
		if _, err := os.Stat(*out); err == nil {
			return fmt.Errorf("%s exists; not overwritten", *out)
		}
		var pass []byte
		if *passFile != "" {
			b, err := os.ReadFile(*passFile)
			if err != nil {
				return err
			}
			pass = []byte(strings.TrimRight(string(b), "\r\n"))
			defer clear(pass)
		} else if *role == "node" {
			return fmt.Errorf("%w: a node identity is sealed under its passphrase: -passphrase-file", errUsage)
		}
		ident, err := trust.NewIdentity(*id, trust.Role(*role))
		if err != nil {
			return err
		}
		if err := trust.WriteIdentityFile(*out, ident, pass); err != nil {
			return err
		}
		b, _ := json.MarshalIndent(ident.Public(), "", "  ")
		fmt.Fprintf(e.stderr, "%s identity %s written to %s (0600); its public entry:\n", *role, *id, *out)
		fmt.Fprintln(e.stdout, string(b))
		return nil
	case "push", "fetch", "status":
		return manifestOnline(ctx, e, sub, *cfgPath, ins)
	}
	fmt.Fprintln(e.stderr, manifestUsage)
	return errUsage
}

// checkUpdates checks the update files, a chain oldest first, under the manifest at path, and
// with write moves the file forward (trust.Trusted: the manifest is written atomically and the
// updates kept beside it).
func checkUpdates(e *env, path string, ins []string, write bool) error {
	var ups []*trust.Update
	for _, in := range ins {
		u, err := trust.ReadUpdateFile(in)
		if err != nil {
			return err
		}
		ups = append(ups, u)
	}
	if !write {
		cur, err := trust.LoadManifest(path)
		if err != nil {
			return err
		}
		if _, _, err := trust.ApplyChain(cur, ups); err != nil {
			fmt.Fprintf(e.stdout, "not accepted yet under %s (serial %d): %v\n", path, cur.Serial, err)
			return nil
		}
		fmt.Fprintf(e.stdout, "accepted under %s (serial %d): ready to push\n", path, cur.Serial)
		return nil
	}
	t, err := trust.OpenTrusted(path)
	if err != nil {
		return err
	}
	applied, err := t.Apply(ups)
	if err != nil && len(applied) == 0 {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: serial %d (%s), %d update(s) applied\n", path, t.Manifest().Serial, t.Manifest().Fingerprint(), len(applied))
	return err
}

// manifestOnline runs push, fetch and status with a client.
func manifestOnline(ctx context.Context, e *env, sub, cfgPath string, ins []string) error {
	var cfg config.Client
	if err := config.Load(cfgPath, &cfg); err != nil {
		return err
	}
	c, err := openClient(ctx, e, cfgPath)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	switch sub {
	case "push":
		if len(ins) == 0 {
			return fmt.Errorf("%w: push needs -in", errUsage)
		}
		var ups []*trust.Update
		for _, in := range ins {
			u, err := trust.ReadUpdateFile(in)
			if err != nil {
				return err
			}
			ups = append(ups, u)
		}
		res, err := c.PushManifest(ctx, ups)
		if err != nil {
			return err
		}
		want := ups[len(ups)-1].Manifest
		return printPush(e, res, want)
	case "fetch":
		t, err := trust.OpenTrusted(cfg.Manifest)
		if err != nil {
			return err
		}
		ups, reached, err := c.FetchManifest(ctx, t.Manifest())
		if err != nil {
			return err
		}
		if len(ups) == 0 {
			fmt.Fprintf(e.stdout, "%s: serial %d, no newer manifest on the dealer or the nodes\n", cfg.Manifest, t.Manifest().Serial)
			return nil
		}
		if _, err := t.Apply(ups); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s: serial %d (%s), %d update(s) applied\n", cfg.Manifest, reached.Serial, reached.Fingerprint(), len(ups))
		return nil
	default: // status
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "this client's file\t%d\t%s\n", c.Manifest().Serial, c.Manifest().Fingerprint())
		for _, s := range st {
			if !s.OK {
				fmt.Fprintf(tw, "%s\t-\t%s\n", s.ID, s.Err)
				continue
			}
			fmt.Fprintf(tw, "%s\t%d\t%.16s\n", s.ID, s.ManifestSerial, s.ManifestHash)
		}
		return tw.Flush()
	}
}

// printPush prints every member's answer to a push; it fails unless every one holds want.
func printPush(e *env, res []client.MemberManifest, want *trust.Manifest) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	behind := 0
	for _, r := range res {
		switch {
		case r.Err != nil:
			behind++
			fmt.Fprintf(tw, "%s\tnot applied\t%v\n", r.ID, r.Err)
		case r.Serial < want.Serial:
			behind++
			fmt.Fprintf(tw, "%s\tserial %d\tbehind\n", r.ID, r.Serial)
		default:
			fmt.Fprintf(tw, "%s\tserial %d\t%d applied now\n", r.ID, r.Serial, r.Applied)
		}
	}
	tw.Flush()
	if behind > 0 {
		return fmt.Errorf("%d of %d members do not hold serial %d yet (the dealer queued it for the nodes: they apply it when they read their control queue; push again to see)", behind, len(res), want.Serial)
	}
	fmt.Fprintf(e.stdout, "every member holds serial %d\n", want.Serial)
	return nil
}

func printManifest(e *env, m *trust.Manifest) {
	fmt.Fprintf(e.stdout, "cluster %s, serial %d, %d-of-%d, hash %s\n", m.ClusterID, m.Serial, m.Threshold, m.N(), m.Hash())
	if len(m.Admins) == 0 {
		fmt.Fprintln(e.stdout, "admins: none (this manifest takes no update: install a new file on every host)")
	} else {
		ids := make([]string, len(m.Admins))
		for i, a := range m.Admins {
			ids[i] = a.ID
		}
		fmt.Fprintf(e.stdout, "admins: %s (%d needed)\n", strings.Join(ids, ", "), m.AdminThreshold)
	}
	for _, l := range [][]trust.Member{m.Nodes, m.Dealers, m.Clients} {
		for _, mem := range l {
			extra := ""
			if mem.Role == trust.RoleClient {
				extra = string(mem.ClientRole.Effective())
			} else if mem.Role == trust.RoleNode {
				extra = fmt.Sprintf("index %d", mem.Index)
			}
			fmt.Fprintf(e.stdout, "  %-7s %-20s %s\n", mem.Role, mem.ID, extra)
		}
	}
}

// printDiff prints what next changes in cur.
func printDiff(e *env, cur, next *trust.Manifest) {
	key := func(mem trust.Member) string {
		b, _ := json.Marshal(mem)
		return string(b)
	}
	old := map[string]trust.Member{}
	for _, l := range [][]trust.Member{cur.Nodes, cur.Dealers, cur.Clients} {
		for _, m := range l {
			old[m.ID] = m
		}
	}
	for _, l := range [][]trust.Member{next.Nodes, next.Dealers, next.Clients} {
		for _, m := range l {
			o, ok := old[m.ID]
			switch {
			case !ok:
				fmt.Fprintf(e.stdout, "  + %s %s %s\n", m.Role, m.ID, m.ClientRole)
			case key(o) != key(m):
				fmt.Fprintf(e.stdout, "  ~ %s %s (keys or role changed)\n", m.Role, m.ID)
			}
			delete(old, m.ID)
		}
	}
	for _, m := range old {
		fmt.Fprintf(e.stdout, "  - %s %s\n", m.Role, m.ID)
	}
	oa, na := map[string]bool{}, map[string]bool{}
	for _, a := range cur.Admins {
		oa[a.ID+string(a.SignPub)] = true
	}
	for _, a := range next.Admins {
		na[a.ID+string(a.SignPub)] = true
		if !oa[a.ID+string(a.SignPub)] {
			fmt.Fprintf(e.stdout, "  + admin %s\n", a.ID)
		}
	}
	for _, a := range cur.Admins {
		if !na[a.ID+string(a.SignPub)] {
			fmt.Fprintf(e.stdout, "  - admin %s\n", a.ID)
		}
	}
	if cur.AdminThreshold != next.AdminThreshold {
		fmt.Fprintf(e.stdout, "  ~ admin threshold %d -> %d\n", cur.AdminThreshold, next.AdminThreshold)
	}
}

func readMember(path string) (trust.Member, error) {
	var m trust.Member
	b, err := os.ReadFile(path)
	if err != nil {
		return m, err
	}
	if err := strictJSON(b, &m); err != nil {
		return m, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

func readAdmin(path string) (trust.Admin, error) {
	var a trust.Admin
	b, err := os.ReadFile(path)
	if err != nil {
		return a, err
	}
	if err := strictJSON(b, &a); err != nil {
		return a, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

func writeOrPrint(e *env, path string, b []byte) error {
	if path == "" {
		_, err := e.stdout.Write(b)
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

var _ flag.Value = (*multiFlag)(nil)
