// SPDX-License-Identifier: GPL-3.0-or-later

package sim

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
)

// EmptySchematic is the Image Factory schematic without customizations (talosctl's default
// installer image in 1.14: factory.talos.dev/metal-installer/<this>:<tag>).
const EmptySchematic = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"

// installerImage splits an installer reference: factory images are
// <factory>/<platform>-installer/<schematic>:<tag> (or .../installer/<schematic>:<tag>).
func installerImage(ref string) (factory bool, schematic, tag string) {
	tag = imageTag(ref)
	name := strings.TrimSuffix(ref, ":"+tag)
	if i := strings.Index(name, "@"); i >= 0 {
		name = name[:i]
	}

	parts := strings.Split(name, "/")
	if len(parts) >= 3 && strings.Contains(parts[0], "factory") && strings.HasSuffix(parts[len(parts)-2], "installer") {
		return true, parts[len(parts)-1], tag
	}

	return false, "", tag
}

// imageContentsLocked: the schematic and extensions an installer image carries. A factory
// image of a schematic the (simulated) factory does not know cannot be pulled.
func (s *Sim) imageContentsLocked(ref string) (string, []string, error) {
	factory, schematic, _ := installerImage(ref)
	if !factory {
		return "", nil, nil // not an Image Factory image: no extensions, no schematic
	}

	exts, ok := s.schematicsLocked()[schematic]
	if !ok {
		return "", nil, status.Errorf(codes.NotFound, "failed to pull image %q: %s: not found (unknown schematic %s)", ref, ref, schematic)
	}

	return schematic, append([]string(nil), exts...), nil
}

func (s *Sim) schematicsLocked() map[string][]string {
	if s.sf.Cluster.Schematics == nil {
		s.sf.Cluster.Schematics = map[string][]string{}
	}

	if _, ok := s.sf.Cluster.Schematics[EmptySchematic]; !ok {
		s.sf.Cluster.Schematics[EmptySchematic] = []string{}
	}

	return s.sf.Cluster.Schematics
}

// installLocked writes an installer image to the node's system disk: it becomes the running
// system at the next boot (like the installer: nothing changes until the reboot).
func (s *Sim) installLocked(n *Node, ref string) error {
	schematic, exts, err := s.imageContentsLocked(ref)
	if err != nil {
		return err
	}

	version := imageTag(ref)
	if version == "" {
		version = n.rec.Version
	}

	n.rec.Pending = &installed{Image: ref, Version: version, Schematic: schematic, Extensions: exts}
	n.rec.Upgrades++
	s.log.Printf("%s: installed %s (schematic %q, extensions %v), active at the next boot", n.def.Name, ref, schematic, exts)

	return s.saveLocked()
}

// activatePendingLocked: at boot the installed image is what runs.
func (n *Node) activatePendingLocked() {
	p := n.rec.Pending
	if p == nil {
		return
	}

	n.rec.Version, n.rec.Schematic, n.rec.Extensions = p.Version, p.Schematic, p.Extensions
	n.rec.Pending = nil
}

// --- etcd quorum ---------------------------------------------------------------------

// EtcdEvent records a change of the number of etcd members that are up.
type EtcdEvent struct {
	Time    time.Time `json:"time"`
	Up      int       `json:"up"`
	Members int       `json:"members"`
	Quorum  int       `json:"quorum"`
	Down    []string  `json:"down,omitempty"`
}

// EtcdStats are the quorum counters (reset on restart and by POST /etcd/reset).
type EtcdStats struct {
	MinUp      int         `json:"min_up"`      // lowest number of members up seen (-1: none seen)
	MinMargin  int         `json:"min_margin"`  // lowest up-quorum seen (negative: quorum was lost)
	QuorumLost int         `json:"quorum_lost"` // transitions from quorum to no quorum
	LeaderDown int         `json:"leader_down"` // times the leader went down while leader
	Forfeits   int         `json:"forfeits"`    // leadership handed over by forfeit-leadership
	Events     []EtcdEvent `json:"events"`      // every change of the up count (last 200)
	lastUp     int
	lastLeader uint64
	had        bool
	hadQuorum  bool
}

func newEtcdStats() *EtcdStats { return &EtcdStats{MinUp: -1, MinMargin: 1 << 30} }

// etcdUpLocked: the member's etcd runs (the machine is up and running; a rebooting, upgrading,
// shutting down or off member does not vote until it is back).
func (n *Node) etcdUpLocked() bool {
	return n.rec.EtcdMember && n.rec.PowerOn && !n.booting && n.stage == runtime.MachineStageRunning
}

// etcdTallyLocked counts the bootstrapped cluster's members and those up.
func (s *Sim) etcdTallyLocked() (members, up int, down []string) {
	cl := s.sf.Cluster

	for _, n := range s.nodes {
		if !n.rec.EtcdMember || n.cfg == nil || n.cfg.ClusterID != cl.ClusterID {
			continue
		}

		members++

		if n.etcdUpLocked() {
			up++
		} else {
			down = append(down, n.hostnameLocked())
		}
	}

	sort.Strings(down)

	return members, up, down
}

func quorumOf(members int) int { return members/2 + 1 }

// hasQuorumLocked: more than half of the members are up.
func (s *Sim) hasQuorumLocked() bool {
	members, up, _ := s.etcdTallyLocked()

	return members > 0 && up >= quorumOf(members)
}

// leaderLocked: the current leader stays leader while it is up; otherwise (and after a
// forfeit) the lowest member ID that is up takes over; 0 without quorum.
func (s *Sim) leaderLocked() uint64 {
	if !s.hasQuorumLocked() {
		return 0
	}

	var lowest uint64

	for _, n := range s.nodes {
		if n.etcdUpLocked() && n.cfg.ClusterID == s.sf.Cluster.ClusterID {
			if n.rec.EtcdMemberID == s.sf.Cluster.Leader {
				return s.sf.Cluster.Leader
			}

			if lowest == 0 || n.rec.EtcdMemberID < lowest {
				lowest = n.rec.EtcdMemberID
			}
		}
	}

	s.sf.Cluster.Leader = lowest

	return lowest
}

// forfeitLocked hands leadership from n to another member that is up.
func (s *Sim) forfeitLocked(n *Node) (string, error) {
	if s.leaderLocked() != n.rec.EtcdMemberID {
		return "", nil // not the leader: nothing to hand over (like etcd's MoveLeader is skipped)
	}

	var next *Node

	for _, o := range s.nodes {
		if o != n && o.etcdUpLocked() && o.cfg.ClusterID == n.cfg.ClusterID && (next == nil || o.rec.EtcdMemberID < next.rec.EtcdMemberID) {
			next = o
		}
	}

	if next == nil {
		return "", status.Error(codes.FailedPrecondition, "etcdserver: no other member to transfer leadership to")
	}

	s.sf.Cluster.Leader = next.rec.EtcdMemberID
	s.etcd.Forfeits++
	s.etcd.lastLeader = next.rec.EtcdMemberID
	s.log.Printf("%s: forfeited etcd leadership to %s", n.def.Name, next.hostnameLocked())

	return next.hostnameLocked(), s.saveLocked()
}

// noteEtcdLocked updates the quorum counters after any change of a node.
func (s *Sim) noteEtcdLocked() {
	if !s.sf.Cluster.Bootstrapped {
		return
	}

	members, up, down := s.etcdTallyLocked()
	if members == 0 {
		return
	}

	st := s.etcd
	quorum := quorumOf(members)
	has := up >= quorum

	if st.lastLeader != 0 {
		for _, n := range s.nodes {
			if n.rec.EtcdMember && n.rec.EtcdMemberID == st.lastLeader && !n.etcdUpLocked() {
				st.LeaderDown++
				s.log.Printf("etcd: leader %s went down while leader", n.hostnameLocked())
				st.lastLeader = 0
			}
		}
	}

	if has {
		st.lastLeader = s.leaderLocked()
	}

	if st.had && up == st.lastUp && has == st.hadQuorum {
		return
	}

	if st.had && st.hadQuorum && !has {
		st.QuorumLost++
		s.log.Printf("etcd: quorum lost (%d of %d members up, quorum %d; down: %s)", up, members, quorum, strings.Join(down, ", "))
	}

	st.had, st.lastUp, st.hadQuorum = true, up, has

	if st.MinUp < 0 || up < st.MinUp {
		st.MinUp = up
	}

	if up-quorum < st.MinMargin {
		st.MinMargin = up - quorum
	}

	st.Events = append(st.Events, EtcdEvent{Time: time.Now().UTC(), Up: up, Members: members, Quorum: quorum, Down: down})
	if len(st.Events) > 200 {
		st.Events = st.Events[len(st.Events)-200:]
	}
}

// EtcdReport is GET /etcd.
type EtcdReport struct {
	Members   int      `json:"members"`
	Up        int      `json:"up"`
	Quorum    int      `json:"quorum"`
	HasQuorum bool     `json:"has_quorum"`
	Leader    string   `json:"leader,omitempty"`
	Down      []string `json:"down,omitempty"`
	Alarms    []string `json:"alarms,omitempty"`
	EtcdStats
}

func (s *Sim) etcdReportLocked() EtcdReport {
	members, up, down := s.etcdTallyLocked()
	r := EtcdReport{Members: members, Up: up, Quorum: quorumOf(members), HasQuorum: members > 0 && up >= quorumOf(members), Down: down, EtcdStats: *s.etcd}

	if id := s.leaderLocked(); id != 0 {
		for _, n := range s.nodes {
			if n.rec.EtcdMember && n.rec.EtcdMemberID == id {
				r.Leader = n.hostnameLocked()
			}
		}
	}

	for id, alarm := range s.alarms {
		r.Alarms = append(r.Alarms, fmt.Sprintf("%016x:%s", id, alarm))
	}

	sort.Strings(r.Alarms)

	return r
}

// resetEtcdStatsLocked starts the counters afresh from the current state.
func (s *Sim) resetEtcdStatsLocked() {
	s.etcd = newEtcdStats()
	s.noteEtcdLocked()
}

// errNoQuorum is what etcd clients see on a cluster without quorum.
func errNoQuorum() error {
	return status.Error(codes.Unavailable, "etcdserver: no leader")
}
