package api_test

import (
	"google.golang.org/protobuf/proto"
)

func proto_clone[T proto.Message](m T) T { return proto.Clone(m).(T) }
