package nodetest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"google.golang.org/protobuf/proto"

	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/trust"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme/shoup"
)

// Forge seals body like trust.Seal but without the sender-side authorisation check, and with
// the given times: it makes the envelopes a misbehaving member could make (a node sending a
// SignRequest, a client sending a KeyShareDelivery, a message issued in the past). The signature
// follows internal/trust's canonical encoding, so only the receiver's checks can refuse it.
func Forge(id *trust.Identity, clusterID string, bt tchsmpb.BodyType, body proto.Message, issued time.Time, ttl time.Duration) []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(body)
	if err != nil {
		panic(err)
	}
	env := &tchsmpb.Envelope{Version: trust.EnvelopeVersion, ClusterId: clusterID, Sender: id.ID,
		MessageId: make([]byte, trust.MessageIDSize), IssuedAt: issued.UnixNano(), Deadline: issued.Add(ttl).UnixNano(),
		BodyType: bt, Body: b}
	rand.Read(env.MessageId)
	env.Signature = ed25519.Sign(id.SignKey, trust.EnvelopeSigningInput(env))
	out, err := proto.Marshal(env)
	if err != nil {
		panic(err)
	}
	return out
}

// Dealt is a key dealt by hand (ManualDeal): the public key, its signed record, and one sealed
// KeyShareDelivery per node id, plus the raw shares so tests can tamper with them.
type Dealt struct {
	Public     *shoup.PublicKey
	Record     *tchsmpb.KeyRecord
	Signed     *tchsmpb.SignedKeyRecord
	Shares     []*shoup.KeyShare
	Deliveries map[string][]byte
}

// ManualDeal deals key as the cluster's dealer would, without publishing anything. tamper, when
// not nil, may change a node's share before it is encrypted (the record keeps the true vk).
func (c *Cluster) ManualDeal(key *shoup.Key, safe bool, tamper func(nodeID string, s *tchsmpb.KeyShare)) *Dealt {
	c.TB.Helper()
	dealerID := c.Identity(c.Manifest.Dealers[0].ID)
	pk, shares, err := shoup.Deal(rand.Reader, key, c.Manifest.Threshold, c.Manifest.N())
	if err != nil {
		c.TB.Fatal(err)
	}
	idb := make([]byte, 16)
	rand.Read(idb)
	rec := &tchsmpb.KeyRecord{KeyId: hex.EncodeToString(idb), Label: "manual", P11Id: idb, Bits: uint32(pk.N.BitLen()),
		Modulus: pk.N.Bytes(), PublicExponent: uint32(pk.E), K: uint32(pk.K), N: uint32(pk.L), V: pk.V.Bytes(),
		CreatedUnix: time.Now().Unix(), SafePrimes: safe, ClusterId: c.Manifest.ClusterID}
	for _, v := range pk.VK {
		rec.Vk = append(rec.Vk, v.Bytes())
	}
	signed, err := trust.SignKeyRecord(dealerID, rec)
	if err != nil {
		c.TB.Fatal(err)
	}
	d := &Dealt{Public: pk, Record: rec, Signed: signed, Shares: shares, Deliveries: map[string][]byte{}}
	sealer := &trust.Sealer{Identity: dealerID, ClusterID: c.Manifest.ClusterID}
	for _, s := range shares {
		node, _ := c.Manifest.NodeByIndex(s.Index)
		ps := &tchsmpb.KeyShare{KeyId: rec.KeyId, Index: uint32(s.Index), S: append([]byte(nil), s.S...)}
		if tamper != nil {
			tamper(node.ID, ps)
		}
		enc, ct, err := trust.EncryptShare(node, c.Manifest.ClusterID, rec.KeyId, ps)
		if err != nil {
			c.TB.Fatal(err)
		}
		env, _, err := sealer.Seal(tchsmpb.BodyType_BODY_TYPE_KEY_SHARE_DELIVERY,
			&tchsmpb.KeyShareDelivery{SignedRecord: signed, Recipient: node.ID, Enc: enc, Ciphertext: ct}, trust.DurableMaxTTL)
		if err != nil {
			c.TB.Fatal(err)
		}
		d.Deliveries[node.ID] = env
	}
	return d
}

// Publish publishes raw durably to node i's control queue (declaring its queues first).
func (c *Cluster) Publish(conn transport.Transport, i int, raw []byte) {
	c.TB.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := conn.Publish(ctx, transport.Node(c.NodeID(i)), raw); err != nil {
		c.TB.Fatal(err)
	}
}

// QueueDepth returns the number of ready messages in a queue of the cluster's vhost, or -1
// when there is no such queue. It asks the queue itself (a passive declaration): the counts of
// rabbitmqctl list_queues lag behind for quorum queues.
func (c *Cluster) QueueDepth(queue string) int {
	c.TB.Helper()
	conn, err := amqp.Dial(c.URL)
	if err != nil {
		c.TB.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		c.TB.Fatal(err)
	}
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Code == amqp.NotFound {
		return -1
	}
	if err != nil {
		c.TB.Fatal(err)
	}
	return q.Messages
}
