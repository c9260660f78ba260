package trust

import tchsmpb "github.com/tchsm/tchsm/proto"

// ClientRole is what a client of the manifest may do (Member.ClientRole): signer clients sign,
// list keys and read public keys; admin clients may also generate, import, delete and restore
// keys. A client listed without one is an admin, which is what every client could do before
// roles existed: a manifest written by an older release keeps working unchanged.
type ClientRole string

// The client roles.
const (
	ClientRoleAdmin  ClientRole = "admin"
	ClientRoleSigner ClientRole = "signer"
)

// DefaultClientRole is the role of a client the manifest gives none.
const DefaultClientRole = ClientRoleAdmin

func (r ClientRole) valid() bool { return r == "" || r == ClientRoleAdmin || r == ClientRoleSigner }

// Effective is r, or DefaultClientRole for "".
func (r ClientRole) Effective() ClientRole {
	if r == "" {
		return DefaultClientRole
	}
	return r
}

// allowed is the one authorisation table: which role may send which body type.
//
// Dealers deal, delete and restore keys, answer clients' GenerateKey, DeleteKey and RestoreKey
// requests, forward the deals of a key generation to a node that took no part (DKGLateDeals, to
// its control queue), and may query nodes (ListKeys, HealthRequest) and report their own health
// and errors. Clients ask: they sign (one request at a time, or several to one node in a
// SignBatch), ask for proofs, list keys, check health, ask the dealer to generate, delete or
// restore keys, run distributed key generations and resharings among the nodes (DKGRequest, DKGCommit,
// ReshareRequest, ReshareCommit: the client relays, it never sees a share) and hand the deals kept for a node that took no part
// to the dealer (DKGLateDeals); which of these a client may send is clientAllowed's decision,
// by its client role. Every client logs in to the nodes with its PIN (PINLogin), changes it
// (PINChange) and wraps the requests that need a login in LoggedIn (the wrapper's inner type is
// checked against this table again by the node); only admins unlock a locked client
// (PINUnlock). The requests to the dealer that change keys come in WithTickets, with the login
// tickets of k nodes (its inner type is checked against this table again by the dealer). Nodes only answer: acknowledgements, signature shares (alone or in a
// SignBatchResult), proofs, key lists, health, errors, manifest states and chains. Manifest
// updates (ManifestPush) come from admin clients, and from the dealer to the nodes' control
// queues; any client may fetch the chain it lacks (ManifestFetch).
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
		tchsmpb.BodyType_BODY_TYPE_RESTORE_KEY:           true,
		tchsmpb.BodyType_BODY_TYPE_RESTORE_KEY_ACK:       true,
		tchsmpb.BodyType_BODY_TYPE_DKG_LATE_DEALS:        true,
		tchsmpb.BodyType_BODY_TYPE_DKG_LATE_DEALS_ACK:    true,
		tchsmpb.BodyType_BODY_TYPE_MANIFEST_PUSH:         true,
		tchsmpb.BodyType_BODY_TYPE_MANIFEST_STATE:        true,
		tchsmpb.BodyType_BODY_TYPE_MANIFEST_CHAIN:        true,
	},
	RoleClient: clientAllowed[ClientRoleAdmin], // every client role's types; admins have them all
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
		tchsmpb.BodyType_BODY_TYPE_PIN_RESULT:        true,
		tchsmpb.BodyType_BODY_TYPE_MANIFEST_STATE:    true,
		tchsmpb.BodyType_BODY_TYPE_MANIFEST_CHAIN:    true,
	},
}

// signerAllowed is what every client may send. The LoggedIn and WithTickets wrappers are
// allowed to every client: what they carry is checked again (Permits) once the node or the
// dealer has unwrapped it.
var signerAllowed = map[tchsmpb.BodyType]bool{
	tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST:   true,
	tchsmpb.BodyType_BODY_TYPE_SIGN_BATCH:     true,
	tchsmpb.BodyType_BODY_TYPE_PROOF_REQUEST:  true,
	tchsmpb.BodyType_BODY_TYPE_LIST_KEYS:      true,
	tchsmpb.BodyType_BODY_TYPE_HEALTH_REQUEST: true,
	tchsmpb.BodyType_BODY_TYPE_PIN_LOGIN:      true,
	tchsmpb.BodyType_BODY_TYPE_PIN_CHANGE:     true,
	tchsmpb.BodyType_BODY_TYPE_LOGGED_IN:      true,
	tchsmpb.BodyType_BODY_TYPE_WITH_TICKETS:   true,
	tchsmpb.BodyType_BODY_TYPE_MANIFEST_FETCH: true,
}

// adminOnly is what only admin clients may send: what changes the set of keys.
var adminOnly = []tchsmpb.BodyType{
	tchsmpb.BodyType_BODY_TYPE_GENERATE_KEY_REQUEST,
	tchsmpb.BodyType_BODY_TYPE_DELETE_KEY,
	tchsmpb.BodyType_BODY_TYPE_RESTORE_KEY,
	tchsmpb.BodyType_BODY_TYPE_DKG_REQUEST,
	tchsmpb.BodyType_BODY_TYPE_DKG_COMMIT,
	tchsmpb.BodyType_BODY_TYPE_DKG_LATE_DEALS,
	tchsmpb.BodyType_BODY_TYPE_PIN_UNLOCK,
	// A push carries updates the admins signed offline, which every receiver checks itself;
	// only admin clients carry them, so that a signer host cannot make the nodes verify chains.
	tchsmpb.BodyType_BODY_TYPE_MANIFEST_PUSH,
	tchsmpb.BodyType_BODY_TYPE_RESHARE_REQUEST,
	tchsmpb.BodyType_BODY_TYPE_RESHARE_COMMIT,
}

// clientAllowed is the table's part for clients, by client role. A body type that only admins
// may send goes into adminOnly.
var clientAllowed = func() map[ClientRole]map[tchsmpb.BodyType]bool {
	admin := make(map[tchsmpb.BodyType]bool)
	for bt := range signerAllowed {
		admin[bt] = true
	}
	for _, bt := range adminOnly {
		admin[bt] = true
	}
	return map[ClientRole]map[tchsmpb.BodyType]bool{ClientRoleSigner: signerAllowed, ClientRoleAdmin: admin}
}()

// Allowed reports whether a member with role may send a message of body type bt, whatever its
// client role: envelopes open (and are sealed) on this check. What a client may ask for is
// Permits's decision.
func Allowed(role Role, bt tchsmpb.BodyType) bool { return allowed[role][bt] }

// Permits reports whether member mem may send a message of body type bt: Allowed for its role
// and, for a client, its client role (Member.ClientRole; none means DefaultClientRole). The
// servers of requests (internal/rpc) decide with it, so that a refused client gets a sealed
// UNAUTHORIZED answer instead of a silent drop.
func Permits(mem Member, bt tchsmpb.BodyType) bool {
	if mem.Role == RoleClient {
		return clientAllowed[mem.ClientRole.Effective()][bt]
	}
	return Allowed(mem.Role, bt)
}
