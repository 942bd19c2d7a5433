package codec

import (
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
)

const typeURLPrefix = "type.googleapis.com/"

// Pack wraps m in an Any, as anypb.New does.
func Pack(m proto.Message) (*anypb.Any, error) {
	b, err := Marshal(m)
	if err != nil {
		return nil, err
	}
	return &anypb.Any{TypeUrl: typeURLPrefix + string(m.ProtoReflect().Descriptor().FullName()), Value: b}, nil
}

// types caches type URL → message type: the registry's lookup parses the
// URL on every call.
var types sync.Map // string → protoreflect.MessageType

// Unpack opens an Any into a new message of its type, as
// anypb.UnmarshalNew does, with the message's strings aliasing a.Value
// (see UnmarshalAliasing): a.Value must not change afterwards.
func Unpack(a *anypb.Any) (proto.Message, error) {
	url := a.GetTypeUrl()
	t, ok := types.Load(url)
	if !ok {
		mt, err := protoregistry.GlobalTypes.FindMessageByURL(url)
		if err != nil {
			return nil, fmt.Errorf("unknown type %q: %w", url, err)
		}
		t, _ = types.LoadOrStore(url, mt)
	}
	m := t.(protoreflect.MessageType).New().Interface()
	if err := UnmarshalAliasing(a.GetValue(), m); err != nil {
		return nil, err
	}
	return m, nil
}
