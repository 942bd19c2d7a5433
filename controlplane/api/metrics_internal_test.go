package api

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// The kind label takes only registered kind names: a request naming a
// kind by its plural or short name counts under the kind, one naming no
// known kind under "" (a client cannot add label values).
func TestRequestMetricsLabelKinds(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg, kinds.NewRegistry(), nil)
	ok := func(context.Context, any) (any, error) { return nil, nil }
	notFound := func(context.Context, any) (any, error) { return nil, status.Error(codes.NotFound, "no") }
	info := &grpc.UnaryServerInfo{FullMethod: "/skiff.api.v1.API/Get"}
	calls := []struct {
		req     any
		handler grpc.UnaryHandler
	}{
		{&apiv1.GetRequest{Kind: "Pod"}, ok},
		{&apiv1.GetRequest{Kind: "pods"}, ok},
		{&apiv1.GetRequest{Kind: "deploy"}, notFound},
		{&apiv1.GetRequest{Kind: "no-such-kind"}, notFound},
		{&apiv1.CreateRequest{Object: &apiv1.Object{Kind: "Service"}}, ok},
	}
	for _, c := range calls {
		_, _ = m.unary(context.Background(), c.req, info, c.handler)
	}
	series := map[[2]string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "skiff_api_requests_total" {
			continue
		}
		for _, s := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range s.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			series[[2]string{l["kind"], l["code"]}] = s.GetCounter().GetValue()
		}
	}
	for _, w := range []struct {
		kind, code string
		want       float64
	}{{"Pod", "OK", 2}, {"Deployment", "NotFound", 1}, {"", "NotFound", 1}, {"Service", "OK", 1}} {
		if got := series[[2]string{w.kind, w.code}]; got != w.want {
			t.Errorf("requests{kind=%q,code=%s} = %v, want %v", w.kind, w.code, got, w.want)
		}
	}
	if len(series) != 4 {
		t.Errorf("series %v, want 4", series)
	}
	if _, err := m.unary(context.Background(), &apiv1.GetRequest{Kind: "Pod"}, info, func(context.Context, any) (any, error) {
		return nil, errors.New("boom")
	}); err == nil {
		t.Fatal("the handler's error was lost")
	}
}
