package deps
import (
 _ "github.com/miekg/pkcs11"
 _ "go.dedis.ch/kyber/v3"
 _ "github.com/rabbitmq/amqp091-go"
 _ "google.golang.org/protobuf/proto"
 _ "filippo.io/bigmod"
 _ "golang.org/x/crypto/argon2"
 _ "github.com/prometheus/client_golang/prometheus"
 _ "gonum.org/v1/plot"
)
