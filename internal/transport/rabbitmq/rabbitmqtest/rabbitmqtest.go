// Package rabbitmqtest holds test helpers for code that talks to RabbitMQ directly, below the
// transport (the broker's own permission checks).
package rabbitmqtest

import (
	"errors"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Refused runs op on a fresh channel of a raw connection to rawURL and fails the test unless
// the broker refuses it with ACCESS_REFUSED (an operation's refusal, or the channel's closure
// that follows a refused publish).
func Refused(t testing.TB, rawURL, what string, op func(ch *amqp.Channel) error) {
	t.Helper()
	raw, err := amqp.Dial(rawURL)
	if err != nil {
		t.Fatalf("%s: dial: %v", what, err)
	}
	defer raw.Close()
	ch, err := raw.Channel()
	if err != nil {
		t.Fatal(err)
	}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	err = op(ch)
	if err == nil {
		// A publish: the refusal comes as the channel's closure.
		select {
		case ae := <-closed:
			if ae != nil {
				err = ae
			}
		case <-time.After(5 * time.Second):
		}
	}
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Code != amqp.AccessRefused {
		t.Errorf("%s: want ACCESS_REFUSED, got %v", what, err)
	}
}
