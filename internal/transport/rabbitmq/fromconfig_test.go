package rabbitmq

import (
	"errors"
	"testing"

	"github.com/tchsm/tchsm/internal/config"
)

func TestFromConfigTLS(t *testing.T) {
	t.Setenv("TCHSM_AMQP_URL", "")
	a := config.AMQP{URL: "amqps://u:p@broker:5671/", CAFile: "/nonexistent/ca.pem"}
	if _, err := FromConfig(a, "c1", "x"); !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("missing CA file: %v", err)
	}
	cfg, err := FromConfig(config.AMQP{}, "c1", "x")
	if err != nil || cfg.URL != config.DefaultAMQPURL || cfg.TLS != nil {
		t.Fatalf("defaults: %+v %v", cfg, err)
	}
	t.Setenv("TCHSM_AMQP_URL", "amqp://other/")
	if cfg, _ := FromConfig(config.AMQP{URL: "amqp://file/"}, "c1", "x"); cfg.URL != "amqp://other/" {
		t.Fatalf("environment does not override: %s", cfg.URL)
	}
}
