package cli

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tchsm/tchsm/client"
	"github.com/tchsm/tchsm/p11shim/token"
	"github.com/tchsm/tchsm/scheme"
)

func init() {
	register("keys", "list, show, generate, import or delete keys (keys list|show|generate|import|delete)", runKeys)
	register("status", "show which nodes answer, their latency and the keys each holds", runStatus)
	register("sign", "sign a file with a cluster key (prints the signature in base64)", runSign)
}

// DefaultClientConfig is where a client configuration is looked for without -config or
// $TCHSM_CONFIG.
const DefaultClientConfig = "/etc/tchsm/client.json"

func clientConfigFlag(fs interface {
	String(string, string, string) *string
}) *string {
	def := os.Getenv("TCHSM_CONFIG")
	if def == "" {
		def = DefaultClientConfig
	}
	return fs.String("config", def, "client configuration file ($TCHSM_CONFIG)")
}

func runKeys(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(e.stderr, "Usage: tchsm keys list|show|generate|import|delete [flags]")
		return errUsage
	}
	sub, args := args[0], args[1:]
	fs := newFlags(e, "keys "+sub, "keys "+sub+" [flags] [KEY-ID]")
	cfgPath := clientConfigFlag(fs)
	bits := fs.Int("bits", 2048, "generate: modulus size (1024, 2048, 3072, 4096)")
	label := fs.String("label", "", "generate, import: CKA_LABEL")
	p11id := fs.String("id", "", "generate, import: CKA_ID in hex (random 16 bytes if empty)")
	pemFile := fs.String("pem", "", "import: PEM file with an RSA private key (PKCS#1 or PKCS#8)")
	dealerCfg := fs.String("dealer-config", "", "import: dealer configuration (import deals in this process)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := openClient(ctx, e, *cfgPath)
	if err != nil {
		return err
	}
	defer c.Close()
	switch sub {
	case "list":
		keys, err := c.Keys(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tLABEL\tCKA_ID\tBITS\tK/N\tCREATED")
		for _, k := range keys {
			fmt.Fprintf(tw, "%s\t%s\t%x\t%d\t%d/%d\t%s\n", k.ID, k.Label, k.P11ID, k.Bits, k.K, k.L, k.Created.UTC().Format(time.RFC3339))
		}
		return tw.Flush()
	case "show":
		if fs.NArg() != 1 {
			return fmt.Errorf("keys show needs a key id")
		}
		k, err := c.Key(ctx, fs.Arg(0))
		if err != nil {
			return err
		}
		pub, err := x509.MarshalPKIXPublicKey(k.Public)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "id:      %s\nlabel:   %s\ncka_id:  %x\nbits:    %d\nk/n:     %d/%d\ncreated: %s\n", k.ID, k.Label, k.P11ID, k.Bits, k.K, k.L, k.Created.UTC().Format(time.RFC3339))
		return pem.Encode(e.stdout, &pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	case "generate":
		idb, err := p11ID(*p11id)
		if err != nil {
			return err
		}
		k, err := c.GenerateKey(ctx, client.GenerateRequest{Bits: *bits, Label: *label, P11ID: idb})
		if err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, k.ID)
		return nil
	case "delete":
		if fs.NArg() != 1 {
			return fmt.Errorf("keys delete needs a key id")
		}
		return c.DeleteKey(ctx, fs.Arg(0))
	case "import":
		return importKey(ctx, e, c, *pemFile, *dealerCfg, *label, *p11id)
	}
	return fmt.Errorf("unknown keys command %q", sub)
}

func p11ID(h string) ([]byte, error) {
	if h == "" {
		b := make([]byte, 16)
		_, err := rand.Read(b)
		return b, err
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return nil, fmt.Errorf("-id must be hex: %v", err)
	}
	return b, nil
}

// parseRSAKey reads a PEM RSA private key (PKCS#1 or PKCS#8).
func parseRSAKey(path string) (*rsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	clear(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	defer clear(blk.Bytes)
	if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: not an RSA private key (PKCS#1 or PKCS#8)", path)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an RSA key", path)
	}
	return rk, nil
}

func runStatus(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "status", "status [-config FILE] [-keys]")
	cfgPath := clientConfigFlag(fs)
	listKeys := fs.Bool("keys", false, "list the key ids each node holds")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := openClient(ctx, e, *cfgPath)
	if err != nil {
		return err
	}
	defer c.Close()
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	m := c.Manifest()
	fmt.Fprintf(e.stdout, "cluster %s: %d-of-%d\n", m.ClusterID, m.Threshold, m.N())
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tINDEX\tSTATE\tLATENCY\tVERSION\tUPTIME\tKEYS")
	up := 0
	for _, s := range st {
		state := "up"
		if !s.OK {
			state = "DOWN: " + s.Err
		} else {
			up++
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%v\t%s\t%v\t%d\n", s.ID, s.Index, state, s.Latency.Round(10*time.Microsecond), s.Version, s.Uptime.Round(time.Second), len(s.Keys))
	}
	tw.Flush()
	// Which keys each node holds: a node that answers but lacks a key others hold missed a
	// delivery (its share may still wait in its queue) or a deletion is under way.
	all := map[string]bool{}
	for _, s := range st {
		for _, k := range s.Keys {
			all[k] = true
		}
	}
	for _, s := range st {
		if !s.OK {
			continue
		}
		held := map[string]bool{}
		for _, k := range s.Keys {
			held[k] = true
		}
		var lacks []string
		for k := range all {
			if !held[k] {
				lacks = append(lacks, k)
			}
		}
		sort.Strings(lacks)
		if len(lacks) > 0 {
			fmt.Fprintf(e.stdout, "%s lacks %d key(s): %s\n", s.ID, len(lacks), strings.Join(lacks, " "))
		}
		if *listKeys {
			keys := append([]string(nil), s.Keys...)
			sort.Strings(keys)
			fmt.Fprintf(e.stdout, "%s holds: %s\n", s.ID, strings.Join(keys, " "))
		}
	}
	if up < m.Threshold {
		return fmt.Errorf("only %d nodes answer; signing needs %d", up, m.Threshold)
	}
	return nil
}

// signMechanisms returns the -mech values of `tchsm sign`, the PKCS#11 token's signing
// mechanisms by name, and those names in the token's order.
func signMechanisms() (map[string]scheme.Mechanism, []string) {
	byName := map[string]scheme.Mechanism{}
	var names []string
	for _, m := range token.SignMechanisms() {
		byName[m.Name] = m.Wire
		names = append(names, m.Name)
	}
	return byName, names
}

func runSign(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "sign", "sign -key ID [-mech sha256] [-in FILE]")
	cfgPath := clientConfigFlag(fs)
	keyID := fs.String("key", "", "key id (required)")
	mechs, names := signMechanisms()
	mech := fs.String("mech", "sha256", strings.Join(names, ", ")+" (raw: the input is the PKCS#1 payload)")
	in := fs.String("in", "-", "file to sign; - for standard input")
	if err := fs.Parse(args); err != nil {
		return err
	}
	m, ok := mechs[strings.ToLower(*mech)]
	if *keyID == "" || !ok {
		fs.Usage()
		return errUsage
	}
	var data []byte
	var err error
	if *in == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(*in)
	}
	if err != nil {
		return err
	}
	c, err := openClient(ctx, e, *cfgPath)
	if err != nil {
		return err
	}
	defer c.Close()
	sig, err := c.Sign(ctx, *keyID, m, data)
	if errors.Is(err, client.ErrPolicyRefused) {
		return fmt.Errorf("the signing nodes' DNSSEC signing policy refuses this signature (fewer than k nodes accept; each node's log says why): %w", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, base64.StdEncoding.EncodeToString(sig))
	return nil
}
