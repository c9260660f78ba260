// Package tchsmpb holds tchsm's protobuf wire messages, generated from tchsm.proto.
//
// Every message on the broker is an [Envelope] whose body is one of the body messages, named by
// [BodyType]. Sealing and opening envelopes (signatures, sender and role checks, deadlines,
// replay protection) lives in internal/trust; this package is only the data.
//
// tchsm.pb.go is generated and committed; regenerate it with `go generate ./proto` (or
// `make proto`) after editing tchsm.proto. TestGeneratedCodeIsCurrent fails when the committed
// file differs from a fresh generation.
package tchsmpb

//go:generate sh gen.sh
