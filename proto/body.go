package tchsmpb

import (
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"
)

// ErrUnknownBodyType is returned for a BodyType this version does not know.
var ErrUnknownBodyType = errors.New("tchsmpb: unknown body type")

// NewBody returns a new, empty body message of type bt, ready for proto.Unmarshal.
func NewBody(bt BodyType) (proto.Message, error) {
	switch bt {
	case BodyType_BODY_TYPE_KEY_SHARE_DELIVERY:
		return new(KeyShareDelivery), nil
	case BodyType_BODY_TYPE_DELETE_KEY:
		return new(DeleteKey), nil
	case BodyType_BODY_TYPE_DELETE_KEY_ACK:
		return new(DeleteKeyAck), nil
	case BodyType_BODY_TYPE_SIGN_REQUEST:
		return new(SignRequest), nil
	case BodyType_BODY_TYPE_SIGNATURE_SHARE:
		return new(SignatureShare), nil
	case BodyType_BODY_TYPE_PROOF_REQUEST:
		return new(ProofRequest), nil
	case BodyType_BODY_TYPE_PROOF:
		return new(Proof), nil
	case BodyType_BODY_TYPE_LIST_KEYS:
		return new(ListKeys), nil
	case BodyType_BODY_TYPE_KEY_LIST:
		return new(KeyList), nil
	case BodyType_BODY_TYPE_HEALTH_REQUEST:
		return new(HealthRequest), nil
	case BodyType_BODY_TYPE_HEALTH:
		return new(Health), nil
	case BodyType_BODY_TYPE_ERROR:
		return new(Error), nil
	case BodyType_BODY_TYPE_GENERATE_KEY_REQUEST:
		return new(GenerateKeyRequest), nil
	case BodyType_BODY_TYPE_GENERATE_KEY_RESPONSE:
		return new(GenerateKeyResponse), nil
	case BodyType_BODY_TYPE_SIGN_BATCH:
		return new(SignBatch), nil
	case BodyType_BODY_TYPE_SIGN_BATCH_RESULT:
		return new(SignBatchResult), nil
	case BodyType_BODY_TYPE_DKG_REQUEST:
		return new(DKGRequest), nil
	case BodyType_BODY_TYPE_DKG_REPLY:
		return new(DKGReply), nil
	case BodyType_BODY_TYPE_DKG_COMMIT:
		return new(DKGCommit), nil
	case BodyType_BODY_TYPE_DKG_COMMIT_ACK:
		return new(DKGCommitAck), nil
	case BodyType_BODY_TYPE_RESTORE_KEY:
		return new(RestoreKey), nil
	case BodyType_BODY_TYPE_RESTORE_KEY_ACK:
		return new(RestoreKeyAck), nil
	case BodyType_BODY_TYPE_DKG_LATE_DEALS:
		return new(DKGLateDeals), nil
	case BodyType_BODY_TYPE_DKG_LATE_DEALS_ACK:
		return new(DKGLateDealsAck), nil
	case BodyType_BODY_TYPE_PIN_LOGIN:
		return new(PINLogin), nil
	case BodyType_BODY_TYPE_PIN_RESULT:
		return new(PINResult), nil
	case BodyType_BODY_TYPE_PIN_CHANGE:
		return new(PINChange), nil
	case BodyType_BODY_TYPE_PIN_UNLOCK:
		return new(PINUnlock), nil
	case BodyType_BODY_TYPE_LOGGED_IN:
		return new(LoggedIn), nil
	case BodyType_BODY_TYPE_WITH_TICKETS:
		return new(WithTickets), nil
	case BodyType_BODY_TYPE_MANIFEST_PUSH:
		return new(ManifestPush), nil
	case BodyType_BODY_TYPE_MANIFEST_STATE:
		return new(ManifestState), nil
	case BodyType_BODY_TYPE_MANIFEST_FETCH:
		return new(ManifestFetch), nil
	case BodyType_BODY_TYPE_MANIFEST_CHAIN:
		return new(ManifestChain), nil
	case BodyType_BODY_TYPE_RESHARE_REQUEST:
		return new(ReshareRequest), nil
	case BodyType_BODY_TYPE_RESHARE_COMMIT:
		return new(ReshareCommit), nil
	}
	return nil, fmt.Errorf("%w: %d", ErrUnknownBodyType, int32(bt))
}

// BodyTypeOf returns the BodyType of a body message, or BODY_TYPE_UNSPECIFIED when m is not a
// body message (for example an Envelope, a KeyRecord or a KeyShare, which never travel as
// envelope bodies).
func BodyTypeOf(m proto.Message) BodyType {
	switch m.(type) {
	case *KeyShareDelivery:
		return BodyType_BODY_TYPE_KEY_SHARE_DELIVERY
	case *DeleteKey:
		return BodyType_BODY_TYPE_DELETE_KEY
	case *DeleteKeyAck:
		return BodyType_BODY_TYPE_DELETE_KEY_ACK
	case *SignRequest:
		return BodyType_BODY_TYPE_SIGN_REQUEST
	case *SignatureShare:
		return BodyType_BODY_TYPE_SIGNATURE_SHARE
	case *ProofRequest:
		return BodyType_BODY_TYPE_PROOF_REQUEST
	case *Proof:
		return BodyType_BODY_TYPE_PROOF
	case *ListKeys:
		return BodyType_BODY_TYPE_LIST_KEYS
	case *KeyList:
		return BodyType_BODY_TYPE_KEY_LIST
	case *HealthRequest:
		return BodyType_BODY_TYPE_HEALTH_REQUEST
	case *Health:
		return BodyType_BODY_TYPE_HEALTH
	case *Error:
		return BodyType_BODY_TYPE_ERROR
	case *GenerateKeyRequest:
		return BodyType_BODY_TYPE_GENERATE_KEY_REQUEST
	case *GenerateKeyResponse:
		return BodyType_BODY_TYPE_GENERATE_KEY_RESPONSE
	case *SignBatch:
		return BodyType_BODY_TYPE_SIGN_BATCH
	case *SignBatchResult:
		return BodyType_BODY_TYPE_SIGN_BATCH_RESULT
	case *DKGRequest:
		return BodyType_BODY_TYPE_DKG_REQUEST
	case *DKGReply:
		return BodyType_BODY_TYPE_DKG_REPLY
	case *DKGCommit:
		return BodyType_BODY_TYPE_DKG_COMMIT
	case *DKGCommitAck:
		return BodyType_BODY_TYPE_DKG_COMMIT_ACK
	case *RestoreKey:
		return BodyType_BODY_TYPE_RESTORE_KEY
	case *RestoreKeyAck:
		return BodyType_BODY_TYPE_RESTORE_KEY_ACK
	case *DKGLateDeals:
		return BodyType_BODY_TYPE_DKG_LATE_DEALS
	case *DKGLateDealsAck:
		return BodyType_BODY_TYPE_DKG_LATE_DEALS_ACK
	case *PINLogin:
		return BodyType_BODY_TYPE_PIN_LOGIN
	case *PINResult:
		return BodyType_BODY_TYPE_PIN_RESULT
	case *PINChange:
		return BodyType_BODY_TYPE_PIN_CHANGE
	case *PINUnlock:
		return BodyType_BODY_TYPE_PIN_UNLOCK
	case *LoggedIn:
		return BodyType_BODY_TYPE_LOGGED_IN
	case *WithTickets:
		return BodyType_BODY_TYPE_WITH_TICKETS
	case *ManifestPush:
		return BodyType_BODY_TYPE_MANIFEST_PUSH
	case *ManifestState:
		return BodyType_BODY_TYPE_MANIFEST_STATE
	case *ManifestFetch:
		return BodyType_BODY_TYPE_MANIFEST_FETCH
	case *ManifestChain:
		return BodyType_BODY_TYPE_MANIFEST_CHAIN
	case *ReshareRequest:
		return BodyType_BODY_TYPE_RESHARE_REQUEST
	case *ReshareCommit:
		return BodyType_BODY_TYPE_RESHARE_COMMIT
	}
	return BodyType_BODY_TYPE_UNSPECIFIED
}

// BodyTypes lists every body type this version knows, in numeric order.
func BodyTypes() []BodyType {
	var out []BodyType
	for v := range BodyType_name {
		if bt := BodyType(v); bt != BodyType_BODY_TYPE_UNSPECIFIED {
			out = append(out, bt)
		}
	}
	slices.Sort(out)
	return out
}

// KnownBodyType reports whether this version knows body type bt (NewBody makes its message).
// A body type it does not know comes from a newer release: receivers answer it with Error
// UNSUPPORTED_BODY_TYPE (docs/operations/upgrade.md).
func KnownBodyType(bt BodyType) bool {
	_, err := NewBody(bt)
	return err == nil
}
