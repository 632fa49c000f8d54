// SPDX-License-Identifier: GPL-3.0-or-later

package sim

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"

	cosiv1alpha1 "github.com/cosi-project/runtime/api/v1alpha1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	clusterapi "github.com/siderolabs/talos/pkg/machinery/api/cluster"
	"github.com/siderolabs/talos/pkg/machinery/api/common"
	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	storageapi "github.com/siderolabs/talos/pkg/machinery/api/storage"
	"github.com/siderolabs/talos/pkg/machinery/role"
)

type ctxKey int

const (
	rolesKey ctxKey = iota
	nodeKey
)

var errNotAuthorized = status.Error(codes.PermissionDenied, "not authorized")

func rolesFrom(ctx context.Context) role.Set {
	r, _ := ctx.Value(rolesKey).(role.Set) //nolint:errcheck

	return r
}

// targetNode is the node an RPC acts on (after apid routing).
func targetNode(ctx context.Context) *Node {
	n, _ := ctx.Value(nodeKey).(*Node) //nolint:errcheck

	return n
}

// rules: the allowed roles per method, as machined's authorizer has them; others need os:admin.
var rules = map[string]role.Set{
	"/machine.MachineService/ApplyConfiguration":    role.MakeSet(role.Admin, role.Reader), // reader: maintenance only
	"/cluster.ClusterService/HealthCheck":           role.MakeSet(role.Admin, role.Operator, role.Reader),
	"/machine.MachineService/Bootstrap":             role.MakeSet(role.Admin),
	"/machine.MachineService/EtcdMemberList":        role.MakeSet(role.Admin, role.Operator, role.Reader, role.EtcdBackup),
	"/machine.MachineService/EtcdForfeitLeadership": role.MakeSet(role.Admin),
	"/machine.MachineService/EtcdLeaveCluster":      role.MakeSet(role.Admin),
	"/machine.MachineService/EtcdRemoveMemberByID":  role.MakeSet(role.Admin),
	"/machine.MachineService/EtcdSnapshot":          role.MakeSet(role.Admin, role.Operator, role.EtcdBackup),
	"/machine.MachineService/EtcdStatus":            role.MakeSet(role.Admin, role.Operator, role.Reader, role.EtcdBackup),
	"/machine.MachineService/Events":                role.MakeSet(role.Admin, role.Operator, role.Reader),
	"/machine.MachineService/Hostname":              role.MakeSet(role.Admin, role.Operator, role.Reader),
	"/machine.MachineService/Kubeconfig":            role.MakeSet(role.Admin),
	"/machine.MachineService/Read":                  role.MakeSet(role.Admin),
	"/machine.MachineService/Reboot":                role.MakeSet(role.Admin, role.Operator),
	"/machine.MachineService/Reset":                 role.MakeSet(role.Admin),
	"/machine.MachineService/ServiceList":           role.MakeSet(role.Admin, role.Operator, role.Reader),
	"/machine.MachineService/Shutdown":              role.MakeSet(role.Admin, role.Operator),
	"/machine.MachineService/Upgrade":               role.MakeSet(role.Admin),
	"/machine.MachineService/Version":               role.MakeSet(role.Admin, role.Operator, role.Reader),
	"/machine.LifecycleService/Upgrade":             role.MakeSet(role.Admin),
	"/machine.ImageService/Pull":                    role.MakeSet(role.Admin, role.Operator),
	"/storage.StorageService/Disks":                 role.MakeSet(role.Admin, role.Operator, role.Reader),
	"/cosi.resource.State/Get":                      role.MakeSet(role.Admin, role.Operator, role.Reader),
	"/cosi.resource.State/List":                     role.MakeSet(role.Admin, role.Operator, role.Reader),
	"/cosi.resource.State/Watch":                    role.MakeSet(role.Admin, role.Operator, role.Reader),
}

func authorize(method string, roles role.Set) error {
	allowed, ok := rules[method]
	if !ok {
		allowed = role.MakeSet(role.Admin)
	}

	if roles.IncludesAny(allowed) {
		return nil
	}

	return errNotAuthorized
}

func newGRPCServer(s *Sim) *grpc.Server {
	creds := &lingerCreds{credentials.NewTLS(&tls.Config{GetConfigForClient: s.tlsForClient, MinVersion: tls.VersionTLS12})}

	srv := grpc.NewServer(
		grpc.Creds(creds),
		grpc.MaxRecvMsgSize(32*1024*1024),
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
	)

	machineapi.RegisterMachineServiceServer(srv, &machineServer{s: s})
	machineapi.RegisterLifecycleServiceServer(srv, &lifecycleServer{s: s})
	machineapi.RegisterImageServiceServer(srv, imageServer{s: s})
	cosiv1alpha1.RegisterStateServer(srv, &stateRouter{s: s})
	storageapi.RegisterStorageServiceServer(srv, &storageServer{s: s})
	clusterapi.RegisterClusterServiceServer(srv, &clusterServer{s: s})

	return srv
}

// identify finds the node that accepted the connection and the caller's roles.
func (s *Sim) identify(ctx context.Context) (*Node, role.Set, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, role.MakeSet(), status.Error(codes.Internal, "no peer")
	}

	host, _, err := net.SplitHostPort(p.LocalAddr.String())
	if err != nil {
		return nil, role.MakeSet(), status.Error(codes.Internal, err.Error())
	}

	s.mu.Lock()
	defer s.mu.Unlock()

	local := s.byAddr[host]
	if local == nil {
		return nil, role.MakeSet(), status.Errorf(codes.Internal, "no simulated node at %s", host)
	}

	if !local.configuredLocked() {
		// maintenance mode: apid in read-only role mode, no client certificate
		return local, role.MakeSet(role.Reader), nil
	}

	tlsInfo, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(tlsInfo.State.PeerCertificates) == 0 {
		return local, role.MakeSet(), errNotAuthorized
	}

	roles, _ := role.Parse(tlsInfo.State.PeerCertificates[0].Subject.Organization)

	return local, roles, nil
}

// route resolves the targets from the "node"/"nodes" metadata like apid's director.
func (s *Sim) route(ctx context.Context, local *Node, method string) ([]string, bool, error) {
	s.mu.Lock()
	maintenance := !local.configuredLocked()
	s.mu.Unlock()

	md, ok := metadata.FromIncomingContext(ctx)
	if !ok || maintenance {
		return []string{local.addr()}, false, nil
	}

	nodes, okNodes := md["nodes"]
	node, okNode := md["node"]

	if okNode && len(node) != 1 {
		return nil, false, status.Error(codes.InvalidArgument, "node metadata must be single-valued")
	}

	switch {
	case okNodes:
		if !strings.HasPrefix(method, "/machine.MachineService/") {
			return nil, false, status.Errorf(codes.InvalidArgument, "one-2-many proxying is not supported for method %s", method)
		}

		return nodes, true, nil
	case okNode:
		return node, false, nil
	default:
		return []string{local.addr()}, false, nil
	}
}

// reach: the node the request is forwarded to, or the error apid's backend would give.
func (s *Sim) reach(local *Node, target string) (*Node, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	n := s.nodeLocked(target)
	if n == local {
		return n, nil
	}

	dialAddr := net.JoinHostPort(target, fmt.Sprint(s.opts.Port))
	if n != nil {
		dialAddr = n.listenAddr()
	}

	if n == nil || !n.upLocked() || s.faults.unreachable(n.addr()) {
		return nil, status.Errorf(codes.Unavailable,
			"connection error: desc = \"transport: Error while dialing: dial tcp %s: connect: connection refused\"", dialAddr)
	}

	if !n.configuredLocked() || n.cfg.OSCA == nil || local.cfg.OSCA == nil || !n.cfg.OSCA.Cert.Equal(local.cfg.OSCA.Cert) {
		return nil, status.Error(codes.Unavailable,
			"connection error: desc = \"transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority\"")
	}

	return n, nil
}

func (s *Sim) prepare(ctx context.Context, method string) (context.Context, []string, bool, *Node, error) {
	local, roles, err := s.identify(ctx)
	if err != nil {
		return ctx, nil, false, nil, err
	}

	ctx = context.WithValue(ctx, rolesKey, roles)

	if err := authorize(method, roles); err != nil {
		return ctx, nil, false, nil, err
	}

	targets, multi, err := s.route(ctx, local, method)

	return ctx, targets, multi, local, err
}

func (s *Sim) forNode(ctx context.Context, local *Node, target, method string, req any) (context.Context, error) {
	n, err := s.reach(local, target)
	if err != nil {
		return ctx, err
	}

	ctx = context.WithValue(ctx, nodeKey, n)

	key := method[strings.LastIndex(method, "/")+1:]
	if r, ok := req.(*machineapi.ApplyConfigurationRequest); ok && r.GetDryRun() {
		key += "/dry_run"
	}

	s.mu.Lock()
	n.calls[key]++
	s.mu.Unlock()

	return ctx, s.faults.apply(ctx, n.addr(), method, false)
}

// afterFaults: an injected failure once the RPC has had its effect.
func (s *Sim) afterFaults(ctx context.Context, method string) error {
	return s.faults.apply(ctx, targetNode(ctx).addr(), method, true)
}

func (s *Sim) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, targets, multi, local, err := s.prepare(ctx, info.FullMethod)
	if err != nil {
		s.log.Printf("%s: %v", info.FullMethod, err)

		return nil, err
	}

	if !multi {
		nctx, err := s.forNode(ctx, local, targets[0], info.FullMethod, req)
		if err != nil {
			return nil, err
		}

		resp, err := handler(nctx, req)
		if err == nil {
			err = s.afterFaults(nctx, info.FullMethod)
		}

		if err != nil {
			s.log.Printf("%s on %s: %v", info.FullMethod, targets[0], err)

			return nil, err
		}

		return resp, nil
	}

	return s.aggregate(ctx, local, targets, info.FullMethod, req, handler)
}

// aggregate answers a one-to-many request: every node's messages, each with its metadata
// (hostname, or the error for a node that failed), like apid's one2many proxy.
func (s *Sim) aggregate(ctx context.Context, local *Node, targets []string, method string, req any, handler grpc.UnaryHandler) (any, error) {
	out, err := newResponse(method)
	if err != nil {
		return nil, err
	}

	msgsField := out.Descriptor().Fields().ByName("messages")
	if msgsField == nil {
		return nil, status.Errorf(codes.Internal, "%s has no messages field", method)
	}

	list := out.Mutable(msgsField).List()

	for _, target := range targets {
		nctx, err := s.forNode(ctx, local, target, method, req)

		var resp any
		if err == nil {
			resp, err = handler(nctx, req)
		}

		if err == nil {
			err = s.afterFaults(nctx, method)
		}

		if err != nil {
			st, _ := status.FromError(err)
			elem := list.NewElement().Message()
			setMetadata(elem, &common.Metadata{Hostname: target, Error: err.Error(), Status: st.Proto()}) //nolint:staticcheck
			list.Append(protoreflect.ValueOfMessage(elem))

			continue
		}

		rm := resp.(proto.Message).ProtoReflect() //nolint:forcetypeassert
		rl := rm.Get(msgsField).List()

		for i := range rl.Len() {
			elem := rl.Get(i).Message()
			setMetadata(elem, &common.Metadata{Hostname: target}) //nolint:staticcheck
			list.Append(protoreflect.ValueOfMessage(elem))
		}
	}

	return out.Interface(), nil
}

func setMetadata(m protoreflect.Message, md *common.Metadata) {
	if f := m.Descriptor().Fields().ByName("metadata"); f != nil {
		m.Set(f, protoreflect.ValueOfMessage(md.ProtoReflect()))
	}
}

func newResponse(method string) (protoreflect.Message, error) {
	svc, meth, ok := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	if !ok {
		return nil, status.Errorf(codes.Internal, "bad method %s", method)
	}

	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}

	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, status.Errorf(codes.Internal, "%s is not a service", svc)
	}

	md := sd.Methods().ByName(protoreflect.Name(meth))
	if md == nil {
		return nil, status.Errorf(codes.Unimplemented, "unknown method %s", method)
	}

	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}

	return mt.New(), nil
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context //nolint:containedctx
}

func (w *wrappedStream) Context() context.Context { return w.ctx }

func (s *Sim) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, targets, multi, local, err := s.prepare(ss.Context(), info.FullMethod)
	if err != nil {
		s.log.Printf("%s: %v", info.FullMethod, err)

		return err
	}

	if multi && len(targets) != 1 {
		return status.Errorf(codes.Unimplemented, "the simulator does not aggregate streaming method %s over several nodes; use one node per call", info.FullMethod)
	}

	nctx, err := s.forNode(ctx, local, targets[0], info.FullMethod, nil)
	if err != nil {
		return err
	}

	err = handler(srv, &wrappedStream{ServerStream: ss, ctx: nctx})
	if err == nil {
		err = s.afterFaults(nctx, info.FullMethod)
	}

	if err != nil {
		s.log.Printf("%s on %s: %v", info.FullMethod, targets[0], err)
	}

	return err
}
