package opendnssec_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// hsmutilBlock renders what ods-hsmutil test prints for one RSA size
// (libhsm/src/bin/hsmtest.c). fail names the step that fails: "gen", "id",
// "sha1", "sha256", "sha512", "del", "cut" (output ends after the SHA-1
// signature line started), or "" for none.
func hsmutilBlock(bits int, fail string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Generating %d-bit RSA key... ", bits)
	if fail == "gen" {
		b.WriteString("Failed\ngenerate key pair: CKR_KEY_SIZE_RANGE\n\n")
		return b.String()
	}
	b.WriteString("OK\n")
	step := func(name, label, ok string) {
		if fail == name {
			fmt.Fprintf(&b, "%s... Failed, error: 1\nsign: CKR_GENERAL_ERROR\n", label)
			return
		}
		fmt.Fprintf(&b, "%s... %s\n", label, ok)
	}
	step("id", "Extracting key identifier", "OK, 0123456789abcdef0123456789abcdef")
	if fail == "cut" {
		b.WriteString("Signing (RSA/SHA1) with key... ")
		return b.String()
	}
	step("sha1", "Signing (RSA/SHA1) with key", "OK")
	step("sha256", "Signing (RSA/SHA256) with key", "OK")
	if bits >= 1024 {
		step("sha512", "Signing (RSA/SHA512) with key", "OK")
	}
	step("del", "Deleting key", "OK")
	b.WriteString("\n")
	return b.String()
}

const hsmutilTail = `Generating 512-bit DSA key... Failed

Generating 512-bit GOST key... Failed

Generating ED25519 key... OK
Extracting key identifier... OK, 77db9b80223352f2fb245518ff8b3d48
Signing with key... OK
Deleting key... OK

Generating 1024 bytes of random data... OK
`

func TestHsmutilJudge(t *testing.T) {
	if _, err := exec.LookPath("awk"); err != nil {
		t.Skip("awk not installed")
	}
	sizes := []int{512, 768, 1024, 1536, 2048, 4096}
	cases := []struct {
		name    string
		fail    map[int]string // size -> failing step
		drop    []int          // sizes left out of the output
		min     int
		wantOK  bool
		summary string
	}{
		{name: "all pass (SoftHSM2)", min: 1024, wantOK: true, summary: "6 ok, 0 rejected below 1024 bits, 0 failed"},
		{name: "tchsm rejects 512 and 768", min: 1024, fail: map[int]string{512: "gen", 768: "gen"}, wantOK: true, summary: "4 ok, 2 rejected below 1024 bits, 0 failed"},
		{name: "rejecting 1024 is a failure", min: 1024, fail: map[int]string{1024: "gen"}, summary: "5 ok, 0 rejected below 1024 bits, 1 failed"},
		{name: "min 0 counts 512 rejection", min: 0, fail: map[int]string{512: "gen"}, summary: "5 ok, 0 rejected below 0 bits, 1 failed"},
		{name: "signing failure below min still fails", min: 1024, fail: map[int]string{512: "sha256"}, summary: "5 ok, 0 rejected below 1024 bits, 1 failed"},
		{name: "sha512 failure", min: 1024, fail: map[int]string{4096: "sha512"}, summary: "5 ok, 0 rejected below 1024 bits, 1 failed"},
		{name: "id failure", min: 1024, fail: map[int]string{2048: "id"}, summary: "1 failed"},
		{name: "delete failure", min: 1024, fail: map[int]string{2048: "del"}, summary: "1 failed"},
		{name: "output cut mid-signature", min: 1024, fail: map[int]string{1536: "cut"}, summary: "1 failed"},
		{name: "size missing (crash)", min: 1024, drop: []int{4096}, summary: "5 ok, 0 rejected below 1024 bits, 1 failed"},
		{name: "everything rejected", min: 8192, fail: map[int]string{512: "gen", 768: "gen", 1024: "gen", 1536: "gen", 2048: "gen", 4096: "gen"}, summary: "0 ok, 6 rejected below 8192 bits, 0 failed"},
	}
	dir := t.TempDir()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			out.WriteString("Testing repository: E2E\n\n")
		sizeLoop:
			for _, bits := range sizes {
				for _, d := range tc.drop {
					if d == bits {
						continue sizeLoop
					}
				}
				out.WriteString(hsmutilBlock(bits, tc.fail[bits]))
			}
			if len(tc.drop) == 0 {
				out.WriteString(hsmutilTail)
			}
			path := filepath.Join(dir, fmt.Sprintf("case%d.log", i))
			if err := os.WriteFile(path, []byte(out.String()), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(awkBin(), "-v", fmt.Sprintf("min=%d", tc.min), "-v", "prog=judge",
				"-f", "hsmutil_judge.awk", path)
			got, err := cmd.CombinedOutput()
			if ok := err == nil; ok != tc.wantOK {
				t.Errorf("pass = %v, want %v\ninput:\n%s\nverdict:\n%s", ok, tc.wantOK, out.String(), got)
			}
			if err != nil {
				if _, isExit := err.(*exec.ExitError); !isExit {
					t.Fatalf("awk: %v", err)
				}
			}
			if !strings.Contains(string(got), tc.summary) {
				t.Errorf("verdict lacks %q:\n%s", tc.summary, got)
			}
		})
	}
}

// awkBin lets the judge be tried with another awk (JUDGE_AWK=mawk): Debian's
// default awk is mawk, this machine's is gawk.
func awkBin() string {
	if a := os.Getenv("JUDGE_AWK"); a != "" {
		return a
	}
	return "awk"
}
