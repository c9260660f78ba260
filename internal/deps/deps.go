package deps

import (
	_ "filippo.io/bigmod"
	_ "github.com/miekg/pkcs11"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/rabbitmq/amqp091-go"
	_ "go.dedis.ch/kyber/v3"
	_ "golang.org/x/crypto/argon2"
	_ "gonum.org/v1/plot"
	_ "google.golang.org/protobuf/proto"
)
