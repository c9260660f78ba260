// Package scripts carries the shell scripts that the tchsm command runs itself, so that an
// installed binary needs no source tree: brokers.sh starts a local RabbitMQ cluster
// (`tchsm dev up -brokers N`).
package scripts

import _ "embed"

// Brokers is brokers.sh: a local cluster of RabbitMQ broker nodes (see its header).
//
//go:embed brokers.sh
var Brokers []byte
