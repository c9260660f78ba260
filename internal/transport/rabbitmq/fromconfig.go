package rabbitmq

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	"github.com/tchsm/tchsm/internal/config"
)

// FromConfig returns the connection configuration for a process called name from the amqp
// section of its configuration file; $TCHSM_AMQP_URL overrides the URL.
func FromConfig(a config.AMQP, clusterID, name string) (Config, error) {
	cfg := Config{URL: URLFromEnv(a.URL), ClusterID: clusterID, Name: name, Prefetch: a.Prefetch}
	if cfg.URL == "" {
		cfg.URL = config.DefaultAMQPURL
	}
	if strings.HasPrefix(cfg.URL, "amqps://") {
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
