package trust

import tchsmpb "github.com/tchsm/tchsm/proto"

// allowed is the one authorisation table: which role may send which body type.
//
// Dealers deal and delete keys, answer clients' GenerateKey and DeleteKey requests, and may
// query nodes (ListKeys, HealthRequest) and report their own health and errors. Clients ask:
// they sign (one request at a time, or several to one node in a SignBatch), ask for proofs,
// list keys, check health, ask the dealer to generate or delete keys, and run distributed key
// generations among the nodes (DKGRequest, DKGCommit: the client relays, it never sees a share),
// handing the deals kept for a node that took no part to the dealer (DKGLateDeals), which alone
// forwards them to that node's control queue. Nodes only answer:
// acknowledgements, signature shares (alone or in a SignBatchResult), proofs, key lists,
// health, errors.
var allowed = map[Role]map[tchsmpb.BodyType]bool{
	RoleDealer: {
		tchsmpb.BodyType_BODY_TYPE_KEY_SHARE_DELIVERY:    true,
		tchsmpb.BodyType_BODY_TYPE_DELETE_KEY:            true,
		tchsmpb.BodyType_BODY_TYPE_DELETE_KEY_ACK:        true,
		tchsmpb.BodyType_BODY_TYPE_GENERATE_KEY_RESPONSE: true,
		tchsmpb.BodyType_BODY_TYPE_LIST_KEYS:             true,
		tchsmpb.BodyType_BODY_TYPE_HEALTH_REQUEST:        true,
		tchsmpb.BodyType_BODY_TYPE_HEALTH:                true,
		tchsmpb.BodyType_BODY_TYPE_ERROR:                 true,
		tchsmpb.BodyType_BODY_TYPE_DKG_LATE_DEALS:        true,
		tchsmpb.BodyType_BODY_TYPE_DKG_LATE_DEALS_ACK:    true,
	},
	RoleClient: {
		tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST:         true,
		tchsmpb.BodyType_BODY_TYPE_SIGN_BATCH:           true,
		tchsmpb.BodyType_BODY_TYPE_PROOF_REQUEST:        true,
		tchsmpb.BodyType_BODY_TYPE_LIST_KEYS:            true,
		tchsmpb.BodyType_BODY_TYPE_HEALTH_REQUEST:       true,
		tchsmpb.BodyType_BODY_TYPE_DELETE_KEY:           true,
		tchsmpb.BodyType_BODY_TYPE_GENERATE_KEY_REQUEST: true,
		tchsmpb.BodyType_BODY_TYPE_DKG_REQUEST:          true,
		tchsmpb.BodyType_BODY_TYPE_DKG_COMMIT:           true,
		tchsmpb.BodyType_BODY_TYPE_DKG_LATE_DEALS:       true,
	},
	RoleNode: {
		tchsmpb.BodyType_BODY_TYPE_DELETE_KEY_ACK:    true,
		tchsmpb.BodyType_BODY_TYPE_SIGNATURE_SHARE:   true,
		tchsmpb.BodyType_BODY_TYPE_SIGN_BATCH_RESULT: true,
		tchsmpb.BodyType_BODY_TYPE_PROOF:             true,
		tchsmpb.BodyType_BODY_TYPE_KEY_LIST:          true,
		tchsmpb.BodyType_BODY_TYPE_HEALTH:            true,
		tchsmpb.BodyType_BODY_TYPE_ERROR:             true,
		tchsmpb.BodyType_BODY_TYPE_DKG_REPLY:         true,
		tchsmpb.BodyType_BODY_TYPE_DKG_COMMIT_ACK:    true,
	},
}

// Allowed reports whether a member with role may send a message of body type bt.
func Allowed(role Role, bt tchsmpb.BodyType) bool { return allowed[role][bt] }
