package rabbitmq

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/tchsm/tchsm/internal/transport"
)

// Account is a broker user with its password, for [Definitions].
type Account struct {
	Permission
	Password string
}

// Definitions returns a RabbitMQ definitions document (`rabbitmqctl import_definitions`, or
// load_definitions in rabbitmq.conf) that creates, in vhost: the cluster's exchanges, the
// control and dead-letter queues of every node in nodeIDs bound to the inbox exchange, and
// the accounts with their permissions. Importing it again is harmless: what exists is updated
// (passwords, permissions), nothing is deleted. It holds password hashes (salted SHA-256, as
// RabbitMQ stores them), not the passwords.
//
// The control queues are created here, by the operator, because no restricted role may create
// them: declaring a queue that names a dead-letter exchange needs read permission on the queue
// and write permission on that exchange (the default one), which would let the declarer read
// the queue and publish into every queue of the vhost.
func Definitions(vhost, clusterID string, nodeIDs []string, accounts []Account) ([]byte, error) {
	if !transport.ValidID(clusterID) {
		return nil, fmt.Errorf("%w: cluster id %q", transport.ErrConfig, clusterID)
	}
	type obj = map[string]any
	var users, perms, topics, exchanges, queues, bindings []obj
	for _, a := range accounts {
		h, err := passwordHash(a.Password)
		if err != nil {
			return nil, err
		}
		users = append(users, obj{"name": a.User, "password_hash": h,
			"hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []string{}, "limits": obj{}})
		perms = append(perms, obj{"user": a.User, "vhost": vhost,
			"configure": a.Configure, "write": a.Write, "read": a.Read})
		for _, t := range a.Topics {
			topics = append(topics, obj{"user": a.User, "vhost": vhost, "exchange": t.Exchange, "write": t.Write, "read": t.Read})
		}
	}
	for _, x := range Exchanges(clusterID) {
		exchanges = append(exchanges, obj{"name": x, "vhost": vhost, "type": "topic", "durable": true,
			"auto_delete": false, "internal": false, "arguments": obj{}})
	}
	for _, id := range nodeIDs {
		if !transport.ValidID(id) {
			return nil, fmt.Errorf("%w: node id %q", transport.ErrConfig, id)
		}
		ctl, dead := NodeControlQueue(clusterID, id), NodeDeadQueue(clusterID, id)
		queues = append(queues,
			obj{"name": dead, "vhost": vhost, "durable": true, "auto_delete": false, "arguments": obj{"x-queue-type": "quorum"}},
			obj{"name": ctl, "vhost": vhost, "durable": true, "auto_delete": false, "arguments": map[string]any(controlArgs(ctl, DeliveryLimit))})
		bindings = append(bindings, obj{"source": InboxExchange(clusterID), "vhost": vhost, "destination": ctl,
			"destination_type": "queue", "routing_key": NodeKey(id), "arguments": obj{}})
	}
	return json.MarshalIndent(obj{
		"vhosts":            []obj{{"name": vhost}},
		"users":             users,
		"permissions":       perms,
		"topic_permissions": topics,
		"exchanges":         exchanges,
		"queues":            queues,
		"bindings":          bindings,
	}, "", "  ")
}

// passwordHash is RabbitMQ's rabbit_password_hashing_sha256 of pw: base64(salt ‖ SHA-256(salt ‖ pw))
// with a random 4-byte salt.
func passwordHash(pw string) (string, error) {
	salt := make([]byte, 4)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	sum := sha256.Sum256(append(append([]byte{}, salt...), pw...))
	return base64.StdEncoding.EncodeToString(append(salt, sum[:]...)), nil
}
