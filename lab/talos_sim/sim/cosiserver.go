// SPDX-License-Identifier: GPL-3.0-or-later

package sim

import (
	"context"

	cosiv1alpha1 "github.com/cosi-project/runtime/api/v1alpha1"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/cosi-project/runtime/pkg/state/protobuf/server"
	"google.golang.org/grpc"
)

// stateRouter serves the COSI state API of the node a request is routed to, through the
// same access policy as Talos (read-only, sensitive types for os:admin).
type stateRouter struct {
	cosiv1alpha1.UnimplementedStateServer

	s *Sim
}

func (r *stateRouter) server(ctx context.Context) cosiv1alpha1.StateServer {
	n := targetNode(ctx)
	st := state.WrapCore(state.Filter(n.st, accessFilter(n.st)))

	return server.NewState(st)
}

func (r *stateRouter) Get(ctx context.Context, req *cosiv1alpha1.GetRequest) (*cosiv1alpha1.GetResponse, error) {
	return r.server(ctx).Get(ctx, req)
}

func (r *stateRouter) List(req *cosiv1alpha1.ListRequest, srv grpc.ServerStreamingServer[cosiv1alpha1.ListResponse]) error {
	return r.server(srv.Context()).List(req, srv)
}

func (r *stateRouter) Watch(req *cosiv1alpha1.WatchRequest, srv grpc.ServerStreamingServer[cosiv1alpha1.WatchResponse]) error {
	return r.server(srv.Context()).Watch(req, srv)
}
