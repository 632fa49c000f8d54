// SPDX-License-Identifier: GPL-3.0-or-later

// Package sim simulates Talos nodes: one process serves the Talos API (apid + machined
// behaviour) on port 50000 of every simulated node address.
package sim

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"log"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cosi-project/runtime/pkg/state"
	"google.golang.org/grpc"

	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
)

// Options configure a simulator.
type Options struct {
	StateDir     string
	Nodes        []NodeDef
	Version      string        // Talos version the nodes report (e.g. v1.14.1)
	Port         int           // Talos API port (50000)
	BootDelay    time.Duration // power on (or reboot) until the API answers
	InstallDelay time.Duration // maintenance apply until the configured node answers
	KubeScript   string        // path to lab/kube; empty disables the control plane
	KubeDir      string        // lab/kube state directory
	EtcdctlPath  string        // etcdctl for `etcd snapshot` (optional)
	PowerCommand string        // run with NAME on|off appended at every power change (powerhook.go)
	Logger       *log.Logger
}

// Sim is the simulator.
type Sim struct {
	opts Options
	log  *log.Logger

	mu     sync.Mutex
	sf     *stateFile
	nodes  []*Node
	byAddr map[string]*Node

	grpc    *grpc.Server
	faults  *faultSet
	stopped bool
	kube    *kubeManager
	power   *powerHook        // Options.PowerCommand (nil without one)
	etcd    *EtcdStats        // quorum counters (GET /etcd)
	alarms  map[uint64]string // etcd alarms by member ID (POST /etcd/alarms)

	recovering bool // a recover bootstrap is restoring etcd (s.mu released meanwhile)

	ctx    context.Context
	cancel context.CancelFunc
}

// Node is one simulated machine.
type Node struct {
	sim *Sim
	def NodeDef
	rec *nodeRecord

	// guarded by sim.mu
	cfg        *parsedConfig
	booting    bool
	bootGen    int
	lis        *trackedListener
	tryTimer   *time.Timer
	tryPrev    string
	stage      runtime.MachineStage
	events     *eventLog
	maintCert  *keyPair
	serverCert *keyPair
	serverCA   string // PEM of the CA that signed serverCert
	lastStatus string
	installErr string
	calls      map[string]int

	applyMu   sync.Mutex
	upgradeMu sync.Mutex
	st        state.State
}

// New loads state and prepares (but does not start) the simulator.
func New(opts Options) (*Sim, error) {
	if opts.Version == "" {
		opts.Version = "v1.14.1"
	}

	if opts.Port == 0 {
		opts.Port = 50000
	}

	if opts.Logger == nil {
		opts.Logger = log.New(os.Stderr, "talos-sim ", log.LstdFlags|log.Lmicroseconds)
	}

	if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
		return nil, err
	}

	sf, err := loadState(opts.StateDir)
	if err != nil {
		return nil, err
	}

	s := &Sim{opts: opts, log: opts.Logger, sf: sf, byAddr: map[string]*Node{}, faults: newFaultSet(), etcd: newEtcdStats(), alarms: map[uint64]string{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.kube = newKubeManager(s)
	s.power = newPowerHook(s)

	for _, def := range opts.Nodes {
		if err := s.addNodeLocked(def); err != nil {
			return nil, err
		}
	}

	// nodes created through the power hook survive a restart too
	extra := make([]string, 0)
	for addr := range sf.Nodes {
		if _, ok := s.byAddr[addr]; !ok {
			extra = append(extra, addr)
		}
	}

	sort.Strings(extra)

	for _, addr := range extra {
		if err := s.addNodeLocked(NodeDef{Name: sf.Nodes[addr].Name, Address: addr}); err != nil {
			return nil, err
		}
	}

	return s, nil
}

func (s *Sim) addNodeLocked(def NodeDef) error {
	if net.ParseIP(def.Address) == nil {
		return fmt.Errorf("node %s: bad address %q", def.Name, def.Address)
	}

	if _, dup := s.byAddr[def.Address]; dup {
		return fmt.Errorf("node %s: address %s used twice", def.Name, def.Address)
	}

	rec, ok := s.sf.Nodes[def.Address]
	if ok && len(def.Disks) == 0 && len(rec.Disks) > 0 {
		def.Disks = rec.Disks
	}

	if len(def.Disks) == 0 {
		def.Disks = DefaultDisks()
	}

	if !ok {
		rec = &nodeRecord{Name: def.Name, Address: def.Address, PowerOn: def.PoweredOn == nil || *def.PoweredOn, Version: s.opts.Version, BootID: newID()}
		s.sf.Nodes[def.Address] = rec
	}

	rec.Name = def.Name
	rec.Disks = def.Disks

	if def.Schematic != "" && (!ok || rec.Schematic == "") {
		rec.Schematic, rec.Extensions = def.Schematic, def.Extensions
	}

	if rec.Schematic == "" {
		rec.Schematic = EmptySchematic
	}

	if _, known := s.schematicsLocked()[rec.Schematic]; !known {
		s.schematicsLocked()[rec.Schematic] = append([]string{}, rec.Extensions...)
	}

	if rec.Version == "" {
		rec.Version = s.opts.Version
	}

	st, err := newResourceState(s.ctx)
	if err != nil {
		return err
	}

	n := &Node{sim: s, def: def, rec: rec, st: st, events: newEventLog(), calls: map[string]int{}}

	if rec.ActiveConfig != "" {
		n.cfg, err = parseConfig([]byte(rec.ActiveConfig))
		if err != nil {
			return fmt.Errorf("node %s: saved config: %w", def.Name, err)
		}
	}

	n.maintCert, err = issue(certRequest{CommonName: "maintenance-service", IPs: []net.IP{net.ParseIP(def.Address)}, Server: true}, nil)
	if err != nil {
		return err
	}

	s.nodes = append(s.nodes, n)
	s.byAddr[def.Address] = n

	return nil
}

// Start opens the listeners of powered-on nodes and resumes an interrupted bootstrap.
func (s *Sim) Start() error {
	s.grpc = newGRPCServer(s)

	s.mu.Lock()
	defer s.mu.Unlock()

	for _, n := range s.nodes {
		n.stage = runtime.MachineStageBooting
		if n.rec.PowerOn {
			if err := n.bootLocked(0); err != nil {
				return err
			}
		} else {
			n.syncLocked()
		}
	}

	if s.sf.Cluster.Bootstrapped {
		s.kube.ensureUp()
	}

	return s.saveLocked()
}

// Stop closes every listener.
func (s *Sim) Stop() {
	s.cancel()

	s.mu.Lock()
	s.stopped = true
	for _, n := range s.nodes {
		n.closeListenerLocked()
	}
	s.mu.Unlock()

	if s.grpc != nil {
		s.grpc.Stop()
	}
}

func (s *Sim) saveLocked() error {
	if s.stopped {
		return nil
	}

	if err := saveState(s.opts.StateDir, s.sf); err != nil {
		s.log.Printf("saving state: %v", err)

		return err
	}

	return nil
}

// Node returns the node with an address or name.
func (s *Sim) Node(key string) *Node {
	s.mu.Lock()
	defer s.mu.Unlock()

	return s.nodeLocked(key)
}

func (s *Sim) nodeLocked(key string) *Node {
	if n, ok := s.byAddr[key]; ok {
		return n
	}

	for _, n := range s.nodes {
		if n.def.Name == key || n.hostnameLocked() == key {
			return n
		}
	}

	return nil
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)

	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func memberID(name string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))

	return h.Sum64()
}

func nodeID(addr string) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte("node-id:" + addr))
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, h.Sum64())

	return hex.EncodeToString(b)
}

// --- node state ----------------------------------------------------------------------

func (n *Node) addr() string { return n.def.Address }

func (n *Node) listenAddr() string {
	return net.JoinHostPort(n.def.Address, strconv.Itoa(n.sim.opts.Port))
}

// configuredLocked: a machine config is active (apid with mutual TLS).
func (n *Node) configuredLocked() bool { return n.cfg != nil && n.cfg.hasMachine() }

func (n *Node) isControlPlaneLocked() bool {
	return n.configuredLocked() && n.cfg.Type.IsControlPlane()
}

func (n *Node) hostnameLocked() string {
	if n.cfg != nil && n.cfg.Hostname != "" {
		return n.cfg.Hostname
	}

	return n.def.Name
}

func (n *Node) upLocked() bool {
	return n.rec.PowerOn && !n.booting && n.lis != nil
}

// bootLocked takes the node down and brings it up after delay (power on, reboot, install).
func (n *Node) bootLocked(delay time.Duration) error {
	n.sim.power.notify(n.def.Name, "off") // reported only when the installed system was up
	n.closeListenerLocked()
	n.events.reset()
	n.lastStatus = ""
	n.booting = true
	n.bootGen++
	gen := n.bootGen
	n.stage = runtime.MachineStageBooting
	n.syncLocked()

	finish := func() {
		n.sim.mu.Lock()
		defer n.sim.mu.Unlock()

		if gen != n.bootGen || !n.rec.PowerOn || n.sim.stopped {
			return
		}

		n.finishBootLocked()
	}

	if delay <= 0 {
		n.finishBootLocked()

		return nil
	}

	time.AfterFunc(delay, finish)

	return nil
}

func (n *Node) finishBootLocked() {
	// a staged configuration takes effect at boot
	if n.rec.PersistedConfig != "" && n.rec.PersistedConfig != n.rec.ActiveConfig {
		if pc, err := parseConfig([]byte(n.rec.PersistedConfig)); err == nil {
			old := n.cfg
			n.rec.ActiveConfig = n.rec.PersistedConfig
			n.cfg = pc

			if old != nil && pc.hasMachine() && strings.Join(extraLabels(old), ",") != strings.Join(extraLabels(pc), ",") {
				n.sim.kube.relabel(n, old)
			}
		} else {
			n.sim.log.Printf("%s: staged config unusable: %v", n.def.Name, err)
		}
	}

	n.booting = false
	n.rec.BootID = newID()
	n.activatePendingLocked()

	if n.configuredLocked() {
		n.rec.Installed = true
		n.stage = runtime.MachineStageRunning
		n.joinClusterLocked()
		n.sim.power.notify(n.def.Name, "on")
	} else {
		n.stage = runtime.MachineStageMaintenance
	}

	n.syncLocked()
	n.sim.syncMembersLocked()
	_ = n.sim.saveLocked()

	if !n.sim.faults.unreachable(n.addr()) {
		if err := n.openListenerLocked(); err != nil {
			n.sim.log.Printf("%s: listen %s: %v", n.def.Name, n.listenAddr(), err)
		}
	}
}

// joinClusterLocked: once the cluster is bootstrapped, a configured control plane joins
// etcd and every configured node registers as a Kubernetes node.
func (n *Node) joinClusterLocked() {
	cl := &n.sim.sf.Cluster
	if !cl.Bootstrapped || n.cfg.ClusterID != cl.ClusterID {
		return
	}

	if n.cfg.Type.IsControlPlane() && !n.rec.EtcdMember {
		n.rec.EtcdMember = true
		n.rec.EtcdMemberID = memberID(n.hostnameLocked() + n.addr())
	}

	if !n.rec.KubeNode {
		n.sim.kube.addNode(n)
	}
}

func (n *Node) powerOffLocked() {
	n.sim.power.notify(n.def.Name, "off")
	n.rec.PowerOn = false
	n.booting = false
	n.bootGen++
	n.closeListenerLocked()
	n.stage = runtime.MachineStageUnknown
	n.syncLocked()
}

// view snapshots what the node's resources show.
func (n *Node) viewLocked() nodeView {
	v := nodeView{Disks: n.def.Disks, Stage: n.stage, Version: n.rec.Version, Hostname: n.hostnameLocked(), InstallError: n.installErr,
		Schematic: n.rec.Schematic, Extensions: n.rec.Extensions}

	if n.configuredLocked() {
		v.Config = n.cfg
		// like Talos: ready once every service is healthy, so a control plane only once it
		// runs etcd (after the bootstrap, or after joining a bootstrapped cluster)
		v.Ready = n.stage == runtime.MachineStageRunning && (!n.cfg.Type.IsControlPlane() || n.rec.EtcdMember)
		v.EtcdRunning = n.rec.EtcdMember
		v.EtcdMemberID = n.rec.EtcdMemberID

		for _, o := range n.sim.nodes {
			if o.configuredLocked() && o.cfg.ClusterID == n.cfg.ClusterID && o.rec.PowerOn {
				v.Members = append(v.Members, memberView{
					ID: nodeID(o.addr()), Hostname: o.hostnameLocked(), Address: o.addr(),
					MachineType: o.cfg.Type, Version: o.rec.Version,
				})
			}
		}

		sort.Slice(v.Members, func(i, j int) bool { return v.Members[i].Hostname < v.Members[j].Hostname })
	}

	return v
}

func (n *Node) syncLocked() {
	v := n.viewLocked()
	if err := syncResources(n.sim.ctx, n.st, v); err != nil {
		n.sim.log.Printf("%s: syncing resources: %v", n.def.Name, err)
	}

	// a MachineStatus event whenever stage or readiness changes (the --wait trackers' signal)
	if key := fmt.Sprintf("%d/%v", v.Stage, v.Ready); key != n.lastStatus {
		n.lastStatus = key
		n.events.add(v.Stage, v.Ready)
	}

	n.sim.noteEtcdLocked()
}

func (s *Sim) syncMembersLocked() {
	for _, n := range s.nodes {
		if n.configuredLocked() {
			n.syncLocked()
		}
	}
}

// machineTypeLocked is the node's type, TypeUnknown in maintenance.
func (n *Node) machineTypeLocked() machine.Type {
	if !n.configuredLocked() {
		return machine.TypeUnknown
	}

	return n.cfg.Type
}
