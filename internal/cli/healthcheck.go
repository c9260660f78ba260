package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

func init() {
	register("healthcheck", "exit 0 when a node's or dealer's /healthz answers OK (container health checks)", runHealthcheck)
}

func runHealthcheck(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "healthcheck", "healthcheck [-url URL]")
	url := fs.String("url", "http://127.0.0.1:9100/healthz", "health endpoint")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("unhealthy: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("unhealthy: %s: %s", resp.Status, body)
	}
	fmt.Fprintf(e.stdout, "healthy: %s", body)
	return nil
}
