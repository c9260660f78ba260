package rabbitmq

import (
	"errors"
	"slices"
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
	if err != nil || !slices.Equal(cfg.URLs, []string{config.DefaultAMQPURL}) || cfg.TLS != nil {
		t.Fatalf("defaults: %+v %v", cfg, err)
	}
	// TLS is set up as soon as one broker is amqps (validation then refuses plain ones).
	cfg, err = FromConfig(config.AMQP{URLs: []string{"amqp://a/", "amqps://b/"}}, "c1", "x")
	if err != nil || cfg.TLS == nil {
		t.Fatalf("amqps in urls: %+v %v", cfg, err)
	}
	t.Setenv("TCHSM_AMQP_URL", "amqp://other/")
	if cfg, _ := FromConfig(config.AMQP{URL: "amqp://file/"}, "c1", "x"); !slices.Equal(cfg.URLs, []string{"amqp://other/"}) {
		t.Fatalf("environment does not override: %s", cfg.URLs)
	}
}

func TestFromConfigURLs(t *testing.T) {
	t.Setenv("TCHSM_AMQP_URL", "")
	for _, tc := range []struct {
		name string
		a    config.AMQP
		env  string
		want []string
	}{
		{"url alone", config.AMQP{URL: "amqp://a/"}, "", []string{"amqp://a/"}},
		{"urls alone", config.AMQP{URLs: []string{"amqp://a/", "amqp://b/"}}, "", []string{"amqp://a/", "amqp://b/"}},
		{"url first, then urls", config.AMQP{URL: "amqp://a/", URLs: []string{"amqp://b/", " ", "amqp://c/"}}, "", []string{"amqp://a/", "amqp://b/", "amqp://c/"}},
		{"environment list replaces both", config.AMQP{URL: "amqp://a/", URLs: []string{"amqp://b/"}}, "amqp://x/, amqp://y/", []string{"amqp://x/", "amqp://y/"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("TCHSM_AMQP_URL", tc.env)
			cfg, err := FromConfig(tc.a, "c1", "x")
			if err != nil || !slices.Equal(cfg.URLs, tc.want) || cfg.URL != "" {
				t.Fatalf("got %q (URL %q), %v; want %q", cfg.URLs, cfg.URL, err, tc.want)
			}
		})
	}
}
