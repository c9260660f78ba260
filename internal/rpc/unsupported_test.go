package rpc

import (
	"errors"
	"fmt"
	"testing"

	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/trust"
	tchsmpb "github.com/tchsm/tchsm/proto"
)

// TestIsUnsupported: the answers that make a client send the older message, from peers of this
// release and from releases before protocol versions, and answers that must not.
func TestIsUnsupported(t *testing.T) {
	// What a release of protocol 1 sends back for a body type its table lacks: a plain
	// rejection (rpc.Server.Serve's, through the transport).
	legacy := &transport.RemoteError{Msg: fmt.Sprintf("%v: %v", ErrRejected, trust.ErrUnauthorized)}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&Error{Peer: "node-1", Code: tchsmpb.Error_UNSUPPORTED_BODY_TYPE}, true},
		{fmt.Errorf("client: %w", &Error{Code: tchsmpb.Error_UNSUPPORTED_VERSION}), true},
		{&Error{Code: tchsmpb.Error_BAD_REQUEST, Message: "BODY_TYPE_SIGN_BATCH is not served on the rpc queue"}, true},
		{&Error{Code: tchsmpb.Error_BAD_REQUEST, Message: "BODY_TYPE_X is not sent under a login"}, true},
		{legacy, true},
		{&Error{Code: tchsmpb.Error_BAD_REQUEST, Message: "a batch holds 1 to 64 requests, not 65"}, false},
		{&Error{Code: tchsmpb.Error_UNAUTHORIZED, Message: "signer client"}, false},
		{&transport.RemoteError{Msg: fmt.Sprintf("%v: %v", ErrRejected, trust.ErrExpired)}, false},
		{transport.ErrNoRoute, false},
		{errors.New("unrelated"), false},
		{nil, false},
	} {
		if got := IsUnsupported(tc.err); got != tc.want {
			t.Errorf("IsUnsupported(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if f := Unsupported(999); f.Code != tchsmpb.Error_UNSUPPORTED_BODY_TYPE {
		t.Fatalf("Unsupported: %v", f)
	}
}
