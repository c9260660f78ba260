package tchsmpb

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"
)

func TestBodyTypesRoundTrip(t *testing.T) {
	types := BodyTypes()
	if len(types) != len(BodyType_name)-1 {
		t.Fatalf("BodyTypes() = %d types, enum has %d", len(types), len(BodyType_name)-1)
	}
	for _, bt := range types {
		m, err := NewBody(bt)
		if err != nil {
			t.Fatalf("NewBody(%v): %v", bt, err)
		}
		if got := BodyTypeOf(m); got != bt {
			t.Errorf("BodyTypeOf(NewBody(%v)) = %v", bt, got)
		}
	}
	if _, err := NewBody(BodyType_BODY_TYPE_UNSPECIFIED); !errors.Is(err, ErrUnknownBodyType) {
		t.Errorf("NewBody(UNSPECIFIED) = %v, want ErrUnknownBodyType", err)
	}
	if _, err := NewBody(BodyType(999)); !errors.Is(err, ErrUnknownBodyType) {
		t.Errorf("NewBody(999) = %v, want ErrUnknownBodyType", err)
	}
	for _, m := range []proto.Message{new(Envelope), new(KeyRecord), new(KeyShare), new(SignedKeyRecord), new(ShareProof)} {
		if got := BodyTypeOf(m); got != BodyType_BODY_TYPE_UNSPECIFIED {
			t.Errorf("BodyTypeOf(%T) = %v, want UNSPECIFIED", m, got)
		}
	}
}
