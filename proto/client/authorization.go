package client

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// CreatePodToken asks the Authorization service for a service account
// token bound to a pod (a node asks for the pods bound to it), moving to
// the next server while one is unavailable.
func (c *Client) CreatePodToken(ctx context.Context, req *apiv1.CreatePodTokenRequest) (*apiv1.CreatePodTokenResponse, error) {
	var last error
	for _, s := range *c.servers.Load() {
		resp, err := apiv1.NewAuthorizationClient(s.conn).CreatePodToken(ctx, req)
		if status.Code(err) != codes.Unavailable {
			return resp, err
		}
		last = err
	}
	return nil, &UnavailableError{Servers: c.Servers(), Last: last}
}
