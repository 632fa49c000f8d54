// SPDX-License-Identifier: GPL-3.0-or-later

package sim

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	clusterapi "github.com/siderolabs/talos/pkg/machinery/api/cluster"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
)

// clusterServer is the server-side `talosctl health`: one call on one control plane checks
// every node, with the condition names of Talos' default cluster checks.
type clusterServer struct {
	clusterapi.UnimplementedClusterServiceServer

	s *Sim
}

type healthCheck struct {
	name  string
	check func(cps, workers []*Node) error
}

func (c *clusterServer) nodesOf(in *clusterapi.HealthCheckRequest, self *Node) (cps, workers []*Node, err error) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()

	info := in.GetClusterInfo()
	if len(info.GetControlPlaneNodes())+len(info.GetWorkerNodes()) == 0 {
		// discovery: every configured node of the cluster
		for _, n := range c.s.nodes {
			if n.configuredLocked() && n.cfg.ClusterID == self.cfg.ClusterID {
				if n.cfg.Type.IsControlPlane() {
					cps = append(cps, n)
				} else {
					workers = append(workers, n)
				}
			}
		}

		return cps, workers, nil
	}

	for _, addr := range info.GetControlPlaneNodes() {
		n := c.s.nodeLocked(addr)
		if n == nil {
			return nil, nil, status.Errorf(codes.InvalidArgument, "node %q is not known to the cluster", addr)
		}

		cps = append(cps, n)
	}

	for _, addr := range info.GetWorkerNodes() {
		n := c.s.nodeLocked(addr)
		if n == nil {
			return nil, nil, status.Errorf(codes.InvalidArgument, "node %q is not known to the cluster", addr)
		}

		workers = append(workers, n)
	}

	return cps, workers, nil
}

func (c *clusterServer) checks() []healthCheck {
	s := c.s

	failing := func(nodes []*Node, ok func(*Node) bool) []string {
		var bad []string

		for _, n := range nodes {
			if !ok(n) {
				bad = append(bad, n.addr())
			}
		}

		sort.Strings(bad)

		return bad
	}

	return []healthCheck{
		{"etcd to be healthy", func(cps, _ []*Node) error {
			if bad := failing(cps, func(n *Node) bool { return n.upLocked() && n.rec.EtcdMember }); len(bad) > 0 {
				return fmt.Errorf("service \"etcd\" not in expected state \"Running\": %s", strings.Join(bad, ", "))
			}

			return nil
		}},
		{"etcd members to be consistent across nodes", func(cps, _ []*Node) error { return nil }},
		{"etcd members to be control plane nodes", func(cps, _ []*Node) error { return nil }},
		{"apid to be ready", func(cps, workers []*Node) error {
			if bad := failing(append(cps, workers...), func(n *Node) bool { return n.upLocked() && !s.faults.unreachable(n.addr()) }); len(bad) > 0 {
				return fmt.Errorf("apid not reachable on: %s", strings.Join(bad, ", "))
			}

			return nil
		}},
		{"all nodes to finish boot sequence", func(cps, workers []*Node) error {
			if bad := failing(append(cps, workers...), func(n *Node) bool { return n.stage == runtime.MachineStageRunning }); len(bad) > 0 {
				return fmt.Errorf("nodes not in running stage: %s", strings.Join(bad, ", "))
			}

			return nil
		}},
		{"all k8s nodes to report", func(cps, workers []*Node) error {
			if !s.sf.Cluster.KubeUp {
				return errors.New("the Kubernetes API is not up yet")
			}

			if bad := failing(append(cps, workers...), func(n *Node) bool { return n.rec.KubeNode }); len(bad) > 0 {
				return fmt.Errorf("nodes not registered in Kubernetes: %s", strings.Join(bad, ", "))
			}

			return nil
		}},
		{"all control plane static pods to be running", func(cps, _ []*Node) error { return nil }},
		{"all control plane components to be ready", func(cps, _ []*Node) error { return nil }},
		{"all k8s nodes to report ready", func(cps, workers []*Node) error {
			if bad := failing(append(cps, workers...), func(n *Node) bool { return n.rec.KubeNode && n.upLocked() }); len(bad) > 0 {
				return fmt.Errorf("some nodes are not ready: %s", strings.Join(bad, ", "))
			}

			return nil
		}},
	}
}

// HealthCheck waits for each condition in turn, streaming "waiting for <condition>: <state>".
func (c *clusterServer) HealthCheck(in *clusterapi.HealthCheckRequest, srv grpc.ServerStreamingServer[clusterapi.HealthCheckProgress]) error {
	self := targetNode(srv.Context())
	if err := checkControlPlane(self, "cluster health check"); err != nil {
		return err
	}

	cps, workers, err := c.nodesOf(in, self)
	if err != nil {
		return err
	}

	timeout := 20 * time.Minute
	if in.GetWaitTimeout() != nil {
		timeout = in.GetWaitTimeout().AsDuration()
	}

	deadline := time.Now().Add(timeout)

	addrs := make([]string, 0, len(cps)+len(workers))
	for _, n := range append(cps, workers...) {
		addrs = append(addrs, n.addr())
	}

	if err := srv.Send(&clusterapi.HealthCheckProgress{Message: fmt.Sprintf("discovered nodes: %q", addrs)}); err != nil {
		return err
	}

	for _, hc := range c.checks() {
		last := ""

		for {
			c.s.mu.Lock()
			cerr := hc.check(cps, workers)
			c.s.mu.Unlock()

			line := "waiting for " + hc.name + ": ..."
			if cerr == nil {
				line = "waiting for " + hc.name + ": OK"
			} else if last != "" {
				line = "waiting for " + hc.name + ": " + cerr.Error()
			}

			if line != last {
				if err := srv.Send(&clusterapi.HealthCheckProgress{Message: line}); err != nil {
					return err
				}

				last = line
			}

			if cerr == nil {
				break
			}

			if time.Now().After(deadline) {
				return status.Errorf(codes.DeadlineExceeded, "%s: %v", hc.name, cerr)
			}

			select {
			case <-srv.Context().Done():
				return srv.Context().Err()
			case <-time.After(500 * time.Millisecond):
			}
		}
	}

	return nil
}
