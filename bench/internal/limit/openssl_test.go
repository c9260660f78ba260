package limit

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/tchsm/tchsm/internal/modexp/openssl"
)

func TestCompareOpenSSL(t *testing.T) {
	if !openssl.Linked {
		t.Skip("built without cgo: no OpenSSL to compare with")
	}
	procs := runtime.GOMAXPROCS(0)
	rs, err := CompareOpenSSL(context.Background(), []int{1024, 2048}, 2, 3, 30*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].Bits != 1024 || rs[1].Bits != 2048 {
		t.Fatalf("got %+v", rs)
	}
	for _, r := range rs {
		if r.Rounds < 3 || r.ShareMS <= 0 || r.OpenSSLMS <= 0 || r.Ratio != r.ShareMS/r.OpenSSLMS || r.ShareRate != 1000/r.ShareMS {
			t.Errorf("nothing measured: %+v", r)
		}
		if r.Engine == "" || r.OpenSSL == "" {
			t.Errorf("engine or version missing: %+v", r)
		}
	}
	if runtime.GOMAXPROCS(0) != procs {
		t.Errorf("GOMAXPROCS not restored: %d", runtime.GOMAXPROCS(0))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := CompareOpenSSL(ctx, []int{1024}, 2, 3, time.Second); err == nil {
		t.Error("a cancelled context measured anyway")
	}
}
