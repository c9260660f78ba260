package rabbitmq

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/transport/transporttest"
)

// TestConformance holds the RabbitMQ transport to the behaviour the roles expect (the
// in-memory transport passes the same tests). One vhost; each subtest is its own cluster id,
// so its queue names are its own.
func TestConformance(t *testing.T) {
	url := testVhost(t)
	var seq atomic.Int32
	transporttest.Run(t, func(t *testing.T) transporttest.Connect {
		cluster := fmt.Sprintf("conformance%d", seq.Add(1))
		return func(t *testing.T, name string) transport.Transport {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			// A short retry ceiling: InboxOutlastsFailures fails 25 times in a row.
			tr, err := Open(ctx, Config{URL: url, ClusterID: cluster, Name: name, retryMax: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tr.Close() })
			return tr
		}
	})
}
