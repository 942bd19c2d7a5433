package client_test

import (
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/proto/client"
)

// The predicates decide by code only: IsForbidden is the authorizer's
// PermissionDenied, never a quota or a terminating namespace, whatever the
// message says.
func TestErrorPredicatesDecideByCode(t *testing.T) {
	cases := []struct {
		err                           error
		forbidden, quota, notAdmitted bool
	}{
		{status.Error(codes.PermissionDenied, "quota"), true, false, false},
		{status.Error(codes.ResourceExhausted, "forbidden: exceeded quota"), false, true, true},
		{status.Error(codes.FailedPrecondition, "forbidden: namespace is terminating"), false, false, true},
		{fmt.Errorf("create pod: %w", status.Error(codes.ResourceExhausted, "x")), false, true, true},
		{status.Error(codes.InvalidArgument, "forbidden"), false, false, false},
	}
	for _, c := range cases {
		if got := client.IsForbidden(c.err); got != c.forbidden {
			t.Errorf("IsForbidden(%v) = %v", c.err, got)
		}
		if got := client.IsQuotaExceeded(c.err); got != c.quota {
			t.Errorf("IsQuotaExceeded(%v) = %v", c.err, got)
		}
		if got := client.IsNotAdmitted(c.err); got != c.notAdmitted {
			t.Errorf("IsNotAdmitted(%v) = %v", c.err, got)
		}
	}
}
