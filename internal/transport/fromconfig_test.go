package transport

import (
	"errors"
	"testing"

	"github.com/tchsm/tchsm/internal/config"
)

func TestFromConfigTLS(t *testing.T) {
	t.Setenv(EnvURL, "")
	a := config.AMQP{URL: "amqps://u:p@broker:5671/", CAFile: "/nonexistent/ca.pem"}
	if _, err := FromConfig(a, "c1", "x"); !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("missing CA file: %v", err)
	}
	cfg, err := FromConfig(config.AMQP{Prefetch: 7}, "c1", "x")
	if err != nil || cfg.URL != config.DefaultAMQPURL || cfg.TLS != nil || cfg.ClusterID != "c1" || cfg.Name != "x" || cfg.Prefetch != 7 {
		t.Fatalf("defaults: %+v %v", cfg, err)
	}
	t.Setenv(EnvURL, "amqp://other/")
	if cfg, _ := FromConfig(config.AMQP{URL: "amqp://file/"}, "c1", "x"); cfg.URL != "amqp://other/" {
		t.Fatalf("environment does not override: %s", cfg.URL)
	}
}
