package rabbitmq

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/tchsm/tchsm/internal/config"
)

// FromConfig returns the connection configuration for a process called name from the amqp
// section of its configuration file: the brokers of url and urls, or those of
// $TCHSM_AMQP_URL (a comma-separated list) when it is set, or config.DefaultAMQPURL.
func FromConfig(a config.AMQP, clusterID, name string) (Config, error) {
	cfg := Config{ClusterID: clusterID, Name: name, Prefetch: a.Prefetch}
	urls := append([]string{a.URL}, a.URLs...)
	if v := os.Getenv(EnvURL); v != "" {
		urls = config.SplitURLs(v)
	}
	for _, u := range urls {
		if u = strings.TrimSpace(u); u != "" {
			cfg.URLs = append(cfg.URLs, u)
		}
	}
	if len(cfg.URLs) == 0 {
		cfg.URLs = []string{config.DefaultAMQPURL}
	}
	if slices.ContainsFunc(cfg.URLs, func(u string) bool { return strings.HasPrefix(u, "amqps://") }) {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if a.CAFile != "" {
			pem, err := os.ReadFile(a.CAFile)
			if err != nil {
				return cfg, fmt.Errorf("%w: ca_file: %v", config.ErrInvalid, err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return cfg, fmt.Errorf("%w: ca_file holds no PEM certificate", config.ErrInvalid)
			}
		}
		if a.CertFile != "" || a.KeyFile != "" {
			cert, err := tls.LoadX509KeyPair(a.CertFile, a.KeyFile)
			if err != nil {
				return cfg, fmt.Errorf("%w: client certificate: %v", config.ErrInvalid, err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		cfg.TLS = tc
	}
	return cfg, nil
}
