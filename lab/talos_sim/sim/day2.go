// SPDX-License-Identifier: GPL-3.0-or-later

package sim

import (
	"context"
	"sort"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
)

// Shutdown powers the node off (talosctl shutdown waits for the stopAllServices task).
func (m *machineServer) Shutdown(ctx context.Context, _ *machineapi.ShutdownRequest) (*machineapi.ShutdownResponse, error) {
	n := targetNode(ctx)
	actor := newID()

	m.s.mu.Lock()
	n.events.addSequence("shutdown", actor)
	n.stage = runtime.MachineStageShuttingDown
	m.s.noteEtcdLocked()
	m.s.mu.Unlock()

	time.AfterFunc(200*time.Millisecond, func() {
		m.s.mu.Lock()
		defer m.s.mu.Unlock()

		n.powerOffLocked()
		m.s.syncMembersLocked()
		_ = m.s.saveLocked()
	})

	return &machineapi.ShutdownResponse{Messages: []*machineapi.Shutdown{{ActorId: actor}}}, nil
}

func (m *machineServer) etcdMemberCheck(n *Node, api string) error {
	if err := checkControlPlane(n, api); err != nil {
		return err
	}

	m.s.mu.Lock()
	defer m.s.mu.Unlock()

	if !n.rec.EtcdMember {
		return status.Error(codes.FailedPrecondition, "etcd is not running on this node")
	}

	if !m.s.hasQuorumLocked() {
		return errNoQuorum()
	}

	return nil
}

// EtcdLeaveCluster removes the node's own etcd member.
func (m *machineServer) EtcdLeaveCluster(ctx context.Context, _ *machineapi.EtcdLeaveClusterRequest) (*machineapi.EtcdLeaveClusterResponse, error) {
	n := targetNode(ctx)
	if err := m.etcdMemberCheck(n, "etcd leave"); err != nil {
		return nil, err
	}

	m.s.mu.Lock()
	defer m.s.mu.Unlock()

	n.rec.EtcdMember, n.rec.EtcdMemberID = false, 0
	n.syncLocked()
	_ = m.s.saveLocked()

	return &machineapi.EtcdLeaveClusterResponse{Messages: []*machineapi.EtcdLeaveCluster{{}}}, nil
}

// EtcdRemoveMemberByID removes another (typically dead) member.
func (m *machineServer) EtcdRemoveMemberByID(ctx context.Context, in *machineapi.EtcdRemoveMemberByIDRequest) (*machineapi.EtcdRemoveMemberByIDResponse, error) {
	n := targetNode(ctx)
	if err := m.etcdMemberCheck(n, "etcd remove member"); err != nil {
		return nil, err
	}

	m.s.mu.Lock()
	defer m.s.mu.Unlock()

	for _, o := range m.s.nodes {
		if o.rec.EtcdMember && o.rec.EtcdMemberID == in.GetMemberId() {
			o.rec.EtcdMember, o.rec.EtcdMemberID = false, 0
			o.syncLocked()
			_ = m.s.saveLocked()

			return &machineapi.EtcdRemoveMemberByIDResponse{Messages: []*machineapi.EtcdRemoveMemberByID{{}}}, nil
		}
	}

	return nil, status.Errorf(codes.NotFound, "etcdserver: member not found: %x", in.GetMemberId())
}

// EtcdForfeitLeadership hands the leadership to another member that is up when this node
// leads (Member names the new leader); on a follower it does nothing.
func (m *machineServer) EtcdForfeitLeadership(ctx context.Context, _ *machineapi.EtcdForfeitLeadershipRequest) (*machineapi.EtcdForfeitLeadershipResponse, error) {
	n := targetNode(ctx)
	if err := m.etcdMemberCheck(n, "etcd forfeit leadership"); err != nil {
		return nil, err
	}

	m.s.mu.Lock()
	next, err := m.s.forfeitLocked(n)
	m.s.mu.Unlock()

	if err != nil {
		return nil, err
	}

	return &machineapi.EtcdForfeitLeadershipResponse{Messages: []*machineapi.EtcdForfeitLeadership{{Member: next}}}, nil
}

// EtcdAlarmList lists the cluster's alarms (set through POST /etcd/alarms).
func (m *machineServer) EtcdAlarmList(ctx context.Context, _ *emptypb.Empty) (*machineapi.EtcdAlarmListResponse, error) {
	n := targetNode(ctx)
	if err := m.etcdMemberCheck(n, "etcd alarm list"); err != nil {
		return nil, err
	}

	m.s.mu.Lock()
	defer m.s.mu.Unlock()

	var alarms []*machineapi.EtcdMemberAlarm

	for id, a := range m.s.alarms {
		alarms = append(alarms, &machineapi.EtcdMemberAlarm{MemberId: id, Alarm: machineapi.EtcdMemberAlarm_AlarmType(machineapi.EtcdMemberAlarm_AlarmType_value[a])})
	}

	sort.Slice(alarms, func(i, j int) bool { return alarms[i].MemberId < alarms[j].MemberId })

	return &machineapi.EtcdAlarmListResponse{Messages: []*machineapi.EtcdAlarm{{MemberAlarms: alarms}}}, nil
}

// EtcdAlarmDisarm clears every alarm.
func (m *machineServer) EtcdAlarmDisarm(ctx context.Context, _ *emptypb.Empty) (*machineapi.EtcdAlarmDisarmResponse, error) {
	n := targetNode(ctx)
	if err := m.etcdMemberCheck(n, "etcd alarm disarm"); err != nil {
		return nil, err
	}

	m.s.mu.Lock()
	defer m.s.mu.Unlock()

	var out []*machineapi.EtcdMemberAlarm

	for id, a := range m.s.alarms {
		out = append(out, &machineapi.EtcdMemberAlarm{MemberId: id, Alarm: machineapi.EtcdMemberAlarm_AlarmType(machineapi.EtcdMemberAlarm_AlarmType_value[a])})
	}

	m.s.alarms = map[uint64]string{}

	return &machineapi.EtcdAlarmDisarmResponse{Messages: []*machineapi.EtcdAlarmDisarm{{MemberAlarms: out}}}, nil
}

// EtcdStatus reports the member and the current leader (it keeps the leadership while up).
func (m *machineServer) EtcdStatus(ctx context.Context, _ *emptypb.Empty) (*machineapi.EtcdStatusResponse, error) {
	n := targetNode(ctx)
	if err := m.etcdMemberCheck(n, "etcd status"); err != nil {
		return nil, err
	}

	m.s.mu.Lock()
	defer m.s.mu.Unlock()

	leader := m.s.leaderLocked()

	return &machineapi.EtcdStatusResponse{Messages: []*machineapi.EtcdStatus{{MemberStatus: &machineapi.EtcdMemberStatus{
		MemberId: n.rec.EtcdMemberID, ProtocolVersion: "3.6.0", StorageVersion: "3.6.0",
		DbSize: 4 << 20, DbSizeInUse: 2 << 20, Leader: leader, RaftIndex: 1000, RaftTerm: 2, RaftAppliedIndex: 1000,
	}}}}, nil
}
