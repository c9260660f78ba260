package clusterinit

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/transport/rabbitmq"
)

// MaxMessageSize is the max_message_size the broker configuration fragment (broker/rabbitmq.conf)
// sets: RabbitMQ refuses larger messages (its default is 128 MiB). tchsm's largest messages (a
// 64-request batch, a node's key list) stay below 1 MiB up to thousands of keys per node.
const MaxMessageSize = 4 << 20

// Files under DIR/broker.
const (
	BrokerDefinitions = "definitions.json"
	BrokerConf        = "rabbitmq.conf"
)

// brokerAccounts collects a cluster's broker users and rewrites base (the amqp section given
// to init) into each role's own.
type brokerAccounts struct {
	base     config.AMQP
	vhost    string
	accounts []rabbitmq.Account
}

var errBadURL = errors.New("clusterinit: broker URL unparseable (not shown: it may hold a password)")

func newBrokerAccounts(base config.AMQP) (*brokerAccounts, error) {
	b := &brokerAccounts{base: base, vhost: "/"}
	for _, raw := range append([]string{base.URL}, base.URLs...) {
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil {
			return nil, errBadURL
		}
		if v := strings.TrimPrefix(u.Path, "/"); v != "" {
			b.vhost = v
		}
		break
	}
	return b, nil
}

// add records a user with a fresh random password and returns the amqp section that logs in
// as it.
func (b *brokerAccounts) add(p rabbitmq.Permission, err error) (config.AMQP, error) {
	if err != nil {
		return config.AMQP{}, err
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return config.AMQP{}, err
	}
	pw := base64.RawURLEncoding.EncodeToString(raw)
	b.accounts = append(b.accounts, rabbitmq.Account{Permission: p, Password: pw})
	rewrite := func(s string) (string, error) {
		if s == "" {
			return "", nil
		}
		u, err := url.Parse(s)
		if err != nil {
			return "", errBadURL
		}
		u.User = url.UserPassword(p.User, pw)
		return u.String(), nil
	}
	a := b.base
	if a.URL, err = rewrite(a.URL); err != nil {
		return a, err
	}
	a.URLs = nil
	for _, s := range b.base.URLs {
		r, err := rewrite(s)
		if err != nil {
			return a, err
		}
		a.URLs = append(a.URLs, r)
	}
	return a, nil
}

// write writes DIR/broker/definitions.json (0600: password hashes) and rabbitmq.conf and
// returns the definitions' path.
func (b *brokerAccounts) write(dir, clusterID string, nodeIDs []string) (string, error) {
	defs, err := rabbitmq.Definitions(b.vhost, clusterID, nodeIDs, b.accounts)
	if err != nil {
		return "", err
	}
	bd := filepath.Join(dir, "broker")
	if err := os.MkdirAll(bd, 0o700); err != nil {
		return "", err
	}
	p := filepath.Join(bd, BrokerDefinitions)
	if err := os.WriteFile(p, append(defs, '\n'), 0o600); err != nil {
		return "", err
	}
	return p, os.WriteFile(filepath.Join(bd, BrokerConf), []byte(brokerConf()), 0o644)
}

// brokerConf is broker/rabbitmq.conf: the settings tchsm wants of the broker.
func brokerConf() string {
	return fmt.Sprintf(`# RabbitMQ settings for tchsm (written by tchsm init): add them to rabbitmq.conf (or put this
# file into /etc/rabbitmq/conf.d/) on every broker node, then restart it.
#
# The broker refuses larger messages (its default is 128 MiB; tchsm's largest stay below 1 MiB).
# The client library reads a whole message into memory before tchsm can look at its size.
max_message_size = %d
`, MaxMessageSize)
}
