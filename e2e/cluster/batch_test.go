package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tchsm/tchsm/client"
	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/testcluster"
)

// nodeRequests sums a node metric's tchsm_node_requests_total{type=typ,result="ok"} over the
// metrics endpoints.
func nodeRequests(t *testing.T, addrs []string, typ string) int {
	t.Helper()
	sum := 0
	for _, a := range addrs {
		resp, err := http.Get("http://" + a + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for l := range strings.Lines(string(b)) {
			if strings.HasPrefix(l, `tchsm_node_requests_total{result="ok",type="`+typ+`"}`) {
				f := strings.Fields(l)
				v, _ := strconv.ParseFloat(f[len(f)-1], 64)
				sum += int(v)
			}
		}
	}
	return sum
}

// TestBatchedSigning signs from 24 goroutines at once. With the default configuration the
// requests that pile up for a node leave in SignBatch messages, and every signature verifies;
// with "batch": 1 no batch is sent.
func TestBatchedSigning(t *testing.T) {
	var addrs []string
	tc := testcluster.Start(t, testcluster.Options{K: 3, N: 5, NodeConfig: func(i int, c *config.Node) {
		c.MetricsAddr = fmt.Sprintf("127.0.0.1:%d", 19300+i)
		addrs = append(addrs, c.MetricsAddr)
	}})
	c := tc.Client()
	k := generate(t, c, 1024)

	// The same client configuration with batching off.
	raw, err := os.ReadFile(tc.ClientConfig)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	m["batch"] = 1
	raw, _ = json.Marshal(m)
	unbatchedPath := filepath.Join(tc.Dir, "client-unbatched.json")
	if err := os.WriteFile(unbatchedPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	unbatched, err := client.Open(ctx, unbatchedPath)
	if err != nil {
		t.Fatal(err)
	}
	defer unbatched.Close()
	if _, err := unbatched.Login(ctx, []byte(tc.PIN)); err != nil {
		t.Fatal(err)
	}

	burst := func(c *client.Client, name string) (batches, shares int) {
		b0, s0 := nodeRequests(t, addrs, "sign_batch"), nodeRequests(t, addrs, "sign_request")
		var wg sync.WaitGroup
		for g := range 24 {
			wg.Go(func() {
				for i := range 4 {
					signOK(t, c, k, fmt.Sprintf("%s %d %d", name, g, i))
				}
			})
		}
		wg.Wait()
		return nodeRequests(t, addrs, "sign_batch") - b0, nodeRequests(t, addrs, "sign_request") - s0
	}
	batches, shares := burst(c, "batched")
	t.Logf("default: 96 signatures, %d shares, %d batches", shares, batches)
	if batches == 0 || shares < 96*3 {
		t.Errorf("default configuration: %d batches, %d shares for 96 signatures", batches, shares)
	}
	batches, shares = burst(unbatched, "unbatched")
	t.Logf("batch 1: 96 signatures, %d shares, %d batches", shares, batches)
	if batches != 0 || shares < 96*3 {
		t.Errorf(`"batch": 1: %d batches, %d shares for 96 signatures`, batches, shares)
	}
}
