package clusterinit

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/transport/rabbitmq"
)

// MaxMessageSize is the max_message_size the broker configuration fragment (broker/rabbitmq.conf)
// sets: RabbitMQ refuses larger messages (the default is 128 MiB). tchsm's largest messages (a
// 64-request batch, a node's key list) stay below 1 MiB up to thousands of keys per node.
const MaxMessageSize = 4 << 20

// brokerUser is one role's broker account.
type brokerUser struct {
	perm     rabbitmq.Permission
	password string
}

// brokerAccounts creates the broker users of a cluster and rewrites base (the amqp section
// given to init) into each role's own.
type brokerAccounts struct {
	base  config.AMQP
	vhost string
	users []brokerUser
}

func newBrokerAccounts(base config.AMQP) (*brokerAccounts, error) {
	urls := append([]string{base.URL}, base.URLs...)
	b := &brokerAccounts{base: base, vhost: "/"}
	for _, raw := range urls {
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("clusterinit: broker URL unparseable (not shown: it may hold a password)")
		}
		if v := strings.TrimPrefix(u.Path, "/"); v != "" {
			b.vhost = v
		}
		break
	}
	return b, nil
}

// add records a user with a fresh password and returns the amqp section that logs in as it.
func (b *brokerAccounts) add(p rabbitmq.Permission, err error) (config.AMQP, error) {
	if err != nil {
		return config.AMQP{}, err
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return config.AMQP{}, err
	}
	pw := base64.RawURLEncoding.EncodeToString(raw)
	b.users = append(b.users, brokerUser{perm: p, password: pw})
	a := b.base
	rewrite := func(s string) (string, error) {
		if s == "" {
			return "", nil
		}
		u, err := url.Parse(s)
		if err != nil {
			return "", fmt.Errorf("clusterinit: broker URL unparseable (not shown: it may hold a password)")
		}
		u.User = url.UserPassword(p.User, pw)
		return u.String(), nil
	}
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

// shellQuote single-quotes s for bash. Names, passwords and regexes here hold no quote, but a
// vhost might.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// script is broker/setup.sh: rabbitmqctl commands that create (or reset) every user with its
// password and permissions, idempotent; `setup.sh remove` deletes the users.
func (b *brokerAccounts) script(clusterID string) string {
	var w strings.Builder
	fmt.Fprintf(&w, `#!/usr/bin/env bash
# Broker users of tchsm cluster %s, written by tchsm init: one per node, the dealer and each
# client, each with the permissions of its role (docs/broker-permissions.md). Run it where
# rabbitmqctl reaches the broker (as root, or the rabbitmq user); on a RabbitMQ cluster, on any
# one node. Idempotent: running it again resets the passwords and permissions to those of this
# cluster's configuration files. `+"`setup.sh remove`"+` deletes the users.
#
#   RABBITMQCTL  the rabbitmqctl command (default rabbitmqctl), split at blanks, e.g.
#                RABBITMQCTL="docker compose exec -T rabbitmq rabbitmqctl"
#   VHOST        the vhost (default: the one of the cluster's broker URLs, %s)
#
# It holds the passwords (passed to rabbitmqctl on its standard input, never as arguments):
# keep it as secret as the configuration files, or delete it once the users exist.
set -euo pipefail
read -ra ctl <<<"${RABBITMQCTL:-rabbitmqctl}"
vhost=${VHOST:-%s}
users=%s
`, clusterID, b.vhost, shellQuote(b.vhost), shellQuote(b.userList()))
	w.WriteString(`
if [[ ${1:-} == remove ]]; then
	for u in $users; do "${ctl[@]}" -q delete_user "$u" >/dev/null 2>&1 || true; done
	exit 0
fi
existing=$("${ctl[@]}" -q list_users --no-table-headers | cut -f1)
user() { # user NAME PASSWORD CONFIGURE WRITE READ
	if grep -qxF -- "$1" <<<"$existing"; then
		printf '%s' "$2" | "${ctl[@]}" -q change_password "$1" >/dev/null
	else
		printf '%s' "$2" | "${ctl[@]}" -q add_user "$1" >/dev/null
	fi
	"${ctl[@]}" -q clear_topic_permissions -p "$vhost" "$1" >/dev/null 2>&1 || true
	"${ctl[@]}" -q set_permissions -p "$vhost" "$1" "$3" "$4" "$5" >/dev/null
}
topic() { "${ctl[@]}" -q set_topic_permissions -p "$vhost" "$1" "$2" "$3" "$4" >/dev/null; }

"${ctl[@]}" -q add_vhost "$vhost" >/dev/null
`)
	for _, u := range b.users {
		p := u.perm
		fmt.Fprintf(&w, "user %s %s %s %s %s\n", shellQuote(p.User), shellQuote(u.password),
			shellQuote(p.Configure), shellQuote(p.Write), shellQuote(p.Read))
		for _, t := range p.Topics {
			fmt.Fprintf(&w, "topic %s %s %s %s\n", shellQuote(p.User), shellQuote(t.Exchange), shellQuote(t.Write), shellQuote(t.Read))
		}
	}
	fmt.Fprintf(&w, "echo \"%d broker users of cluster %s set up in vhost $vhost\" >&2\n", len(b.users), clusterID)
	return w.String()
}

func (b *brokerAccounts) userList() string {
	names := make([]string, len(b.users))
	for i, u := range b.users {
		names[i] = u.perm.User
	}
	return strings.Join(names, " ")
}

// brokerConf is broker/rabbitmq.conf: the settings tchsm wants of the broker.
func brokerConf() string {
	return fmt.Sprintf(`# RabbitMQ settings for tchsm (written by tchsm init): add them to rabbitmq.conf (or drop this
# file into /etc/rabbitmq/conf.d/) on every broker node, then restart it.
#
# The broker refuses messages larger than this (the default is 128 MiB): tchsm's largest stay
# below 1 MiB, and a consumer reads a whole message before it can look at it.
max_message_size = %d
`, MaxMessageSize)
}

func (b *brokerAccounts) write(dir, clusterID string) (setup string, err error) {
	bd := filepath.Join(dir, "broker")
	if err := os.MkdirAll(bd, 0o700); err != nil {
		return "", err
	}
	setup = filepath.Join(bd, "setup.sh")
	if err := os.WriteFile(setup, []byte(b.script(clusterID)), 0o700); err != nil {
		return "", err
	}
	return setup, os.WriteFile(filepath.Join(bd, "rabbitmq.conf"), []byte(brokerConf()), 0o644)
}
