// SPDX-License-Identifier: GPL-3.0-or-later

package sim

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"sort"
	"strings"
	"time"

	"github.com/cosi-project/runtime/pkg/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/siderolabs/talos/pkg/machinery/api/common"
	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/config/configdiff"
	"github.com/siderolabs/talos/pkg/machinery/config/types/block/blockhelpers"
	"github.com/siderolabs/talos/pkg/machinery/config/validation"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
	"github.com/siderolabs/talos/pkg/machinery/role"
)

type machineServer struct {
	machineapi.UnimplementedMachineServiceServer

	s *Sim
}

// Version implements MachineService.Version.
func (m *machineServer) Version(ctx context.Context, _ *emptypb.Empty) (*machineapi.VersionResponse, error) {
	n := targetNode(ctx)

	m.s.mu.Lock()
	tag := n.rec.Version
	m.s.mu.Unlock()

	return &machineapi.VersionResponse{Messages: []*machineapi.Version{{
		Version: &machineapi.VersionInfo{
			Tag:       tag,
			Sha:       "simulated",
			Built:     "",
			GoVersion: goruntime.Version(),
			Os:        "linux",
			Arch:      "amd64",
		},
		Platform: &machineapi.PlatformInfo{Name: "nocloud", Mode: "cloud"},
		Features: &machineapi.FeaturesInfo{Rbac: true},
	}}}, nil
}

// simMode is the validation runtime mode of a simulated (nocloud) machine.
type simMode struct{ installed bool }

func (m simMode) String() string        { return "cloud" }
func (m simMode) RequiresInstall() bool { return !m.installed }
func (m simMode) InContainer() bool     { return false }

var _ validation.RuntimeMode = simMode{}

// ApplyConfiguration follows machined: parse, validate, diff on dry-run, then apply by mode.
//
//nolint:gocyclo,cyclop
func (m *machineServer) ApplyConfiguration(ctx context.Context, in *machineapi.ApplyConfigurationRequest) (*machineapi.ApplyConfigurationResponse, error) {
	n := targetNode(ctx)

	if !n.applyMu.TryLock() {
		return nil, status.Error(codes.FailedPrecondition, "another apply configuration is already in progress")
	}
	defer n.applyMu.Unlock()

	m.s.mu.Lock()
	inMaintenance := !n.configuredLocked()
	installed := n.rec.Installed
	current := n.cfg
	m.s.mu.Unlock()

	if !inMaintenance && !rolesFrom(ctx).Includes(role.Admin) {
		return nil, errNotAuthorized
	}

	mode := in.Mode.String()

	pc, err := parseConfig(in.GetData())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}

	if !inMaintenance && pc.Provider.RawV1Alpha1() == nil {
		return nil, status.Error(codes.InvalidArgument, "the applied machine configuration doesn't contain v1alpha1 config, did you mean to patch the machine config instead?")
	}

	if in.Mode == machineapi.ApplyConfigurationRequest_REBOOT { //nolint:staticcheck
		if inMaintenance {
			in.Mode = machineapi.ApplyConfigurationRequest_NO_REBOOT
		} else {
			return nil, status.Error(codes.Unimplemented, "the REBOOT mode is not supported, please use AUTO or NO_REBOOT modes instead")
		}
	}

	// like machined: validation in the runtime context (the install disk must match a disk)
	warnings, err := pc.Provider.ValidateAtRuntime(ctx, n.st, simMode{installed: installed})
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}

	var modeDetails string

	switch in.Mode { //nolint:exhaustive
	case machineapi.ApplyConfigurationRequest_AUTO:
		in.Mode = machineapi.ApplyConfigurationRequest_NO_REBOOT
		mode = fmt.Sprintf("%s(%s)", mode, in.Mode)

		fallthrough
	case machineapi.ApplyConfigurationRequest_TRY:
		fallthrough
	case machineapi.ApplyConfigurationRequest_NO_REBOOT:
		modeDetails = "Applied configuration without a reboot"
	case machineapi.ApplyConfigurationRequest_STAGED:
		modeDetails = "Staged configuration to be applied after the next reboot"
	default:
		return nil, status.Errorf(codes.InvalidArgument, "incorrect mode '%s' specified for the apply config call", in.Mode.String())
	}

	if in.DryRun {
		details, err := generateDiff(current, pc)
		if err != nil {
			return nil, fmt.Errorf("failed to generate diff: %w", err)
		}

		return &machineapi.ApplyConfigurationResponse{Messages: []*machineapi.ApplyConfiguration{{
			Mode:        in.Mode,
			ModeDetails: fmt.Sprintf("Dry run summary:\n%s (skipped in dry-run).\n%s", modeDetails, details),
		}}}, nil
	}

	m.s.log.Printf("%s: apply config request: mode %s", n.def.Name, strings.ToLower(mode))

	m.s.mu.Lock()
	defer m.s.mu.Unlock()

	if in.Mode != machineapi.ApplyConfigurationRequest_TRY && n.tryTimer != nil {
		n.tryTimer.Stop()
		n.tryTimer = nil
	}

	switch {
	case inMaintenance && installDiskProblem(ctx, n.st, pc) != "":
		// like an install that finds no disk: the answer was sent, the node stays in
		// maintenance mode and reports why in MachineStatus
		n.installErr = installDiskProblem(ctx, n.st, pc)
		n.stage = runtime.MachineStageInstalling
		m.s.log.Printf("%s: install failed: %s", n.def.Name, n.installErr)
		n.syncLocked()
	case inMaintenance:
		// maintenance: the machine installs and boots into the configuration, which
		// becomes active when the installed system boots
		n.installErr = ""
		n.rec.PersistedConfig = string(pc.Raw)
		n.serverCert = nil
		n.stage = runtime.MachineStageInstalling
		n.syncLocked()
		gen := n.bootGen

		// answer first, then install and reboot (the connection drops then)
		time.AfterFunc(100*time.Millisecond, func() {
			m.s.mu.Lock()
			defer m.s.mu.Unlock()

			if gen == n.bootGen && n.rec.PowerOn {
				_ = n.bootLocked(m.s.opts.InstallDelay) //nolint:errcheck
			}
		})
	case in.Mode == machineapi.ApplyConfigurationRequest_TRY:
		timeout := 60 * time.Second
		if in.TryModeTimeout != nil {
			timeout = in.TryModeTimeout.AsDuration()
		}

		modeDetails += fmt.Sprintf("\nThe config is applied in 'try' mode and will be automatically reverted back in %s", timeout.String())

		if n.tryTimer == nil {
			n.tryPrev = n.rec.ActiveConfig
		}

		n.setActiveLocked(pc)

		n.tryTimer = time.AfterFunc(timeout, func() { m.s.rollbackTry(n) })
	case in.Mode == machineapi.ApplyConfigurationRequest_NO_REBOOT:
		n.rec.PersistedConfig = string(pc.Raw)
		n.setActiveLocked(pc)
	case in.Mode == machineapi.ApplyConfigurationRequest_STAGED:
		n.rec.PersistedConfig = string(pc.Raw)
	}

	_ = m.s.saveLocked()

	return &machineapi.ApplyConfigurationResponse{Messages: []*machineapi.ApplyConfiguration{{
		Mode:        in.Mode,
		Warnings:    warnings,
		ModeDetails: modeDetails,
	}}}, nil
}

// setActiveLocked switches a running node to a new configuration without a reboot.
func (n *Node) setActiveLocked(pc *parsedConfig) {
	oldHost := n.hostnameLocked()
	oldCfg := n.cfg
	n.rec.ActiveConfig = string(pc.Raw)
	n.cfg = pc

	if oldCfg != nil && strings.Join(extraLabels(oldCfg), ",") != strings.Join(extraLabels(pc), ",") {
		n.sim.kube.relabel(n, oldCfg)
	}

	if n.serverCert != nil && string(pc.OSCA.CertPEM) != n.serverCA {
		n.serverCert = nil
	}

	n.joinClusterLocked()
	n.syncLocked()
	n.sim.syncMembersLocked()

	if n.rec.KubeNode && oldHost != n.hostnameLocked() {
		n.sim.log.Printf("%s: hostname changed from %s to %s (Kubernetes node not renamed)", n.def.Name, oldHost, n.hostnameLocked())
	}
}

func (s *Sim) rollbackTry(n *Node) {
	s.mu.Lock()
	defer s.mu.Unlock()

	if n.tryTimer == nil {
		return
	}

	n.tryTimer = nil

	if pc, err := parseConfig([]byte(n.tryPrev)); err == nil {
		s.log.Printf("%s: try mode timeout, rolling back the configuration", n.def.Name)
		n.setActiveLocked(pc)
		_ = s.saveLocked()
	}
}

// generateDiff renders the change like machined's dry run ("No changes." when equal).
func generateDiff(current, next *parsedConfig) (string, error) {
	var oldCfg, newCfg = current, next

	var diff string

	var err error

	if oldCfg == nil {
		diff, err = configdiff.DiffConfigs(nil, newCfg.Provider)
	} else {
		diff, err = configdiff.DiffConfigs(oldCfg.Provider, newCfg.Provider)
	}

	if err != nil {
		return "", err
	}

	if diff == "" {
		diff = "No changes."
	}

	return "Config diff:\n\n" + diff, nil
}

func checkControlPlane(n *Node, api string) error {
	n.sim.mu.Lock()
	defer n.sim.mu.Unlock()

	if !n.configuredLocked() {
		return status.Errorf(codes.Unimplemented, "machine type is not set, cannot use %s API", api)
	}

	if !n.cfg.Type.IsControlPlane() {
		return status.Errorf(codes.Unimplemented, "%s is only available on control plane nodes", api)
	}

	return nil
}

// Bootstrap implements MachineService.Bootstrap: once per cluster, AlreadyExists after.
func (m *machineServer) Bootstrap(ctx context.Context, in *machineapi.BootstrapRequest) (*machineapi.BootstrapResponse, error) {
	n := targetNode(ctx)

	m.s.log.Printf("%s: bootstrap request received", n.def.Name)

	m.s.mu.Lock()
	allowed := n.configuredLocked() && n.stage == runtime.MachineStageRunning
	m.s.mu.Unlock()

	if !allowed {
		return nil, status.Error(codes.FailedPrecondition, "bootstrap is not available yet")
	}

	if err := checkControlPlane(n, "bootstrap"); err != nil {
		return nil, err
	}

	m.s.mu.Lock()
	defer m.s.mu.Unlock()

	if !n.cfg.HasEtcdCA {
		return nil, status.Error(codes.InvalidArgument, "etcd is not configured, bootstrap is not possible")
	}

	cl := &m.s.sf.Cluster
	if n.rec.EtcdMember || (cl.Bootstrapped && cl.ClusterID == n.cfg.ClusterID) {
		return nil, status.Error(codes.AlreadyExists, "etcd data directory is not empty")
	}

	if m.s.recovering {
		return nil, status.Error(codes.FailedPrecondition, "bootstrap is not available yet: a recovery is in progress")
	}

	// the lab's control plane kept running while etcd was wiped: a recovery restores its etcd
	// (recover.go) and the running kube-apiserver reconnects, with the nodes the snapshot holds
	restored := false

	if in.RecoverEtcd {
		if err := m.s.recoverLocked(n, in.RecoverSkipHashCheck); err != nil {
			return nil, err
		}

		if cl.Bootstrapped {
			return nil, status.Error(codes.AlreadyExists, "etcd data directory is not empty")
		}

		restored = cl.KubeUp && m.s.kube.enabled()
	}

	cl.Bootstrapped = true
	cl.BootstrapNode = n.addr()
	cl.ClusterID = n.cfg.ClusterID

	if !restored {
		cl.KubeUp = false
		cl.KubeError = ""
	}

	// every configured node of the cluster joins: control planes become etcd members
	for _, o := range m.s.nodes {
		if o.configuredLocked() && o.cfg.ClusterID == cl.ClusterID && o.rec.PowerOn && !o.booting {
			if !restored {
				o.rec.KubeNode = false
			}

			if o.cfg.Type.IsControlPlane() {
				o.rec.EtcdMember = true
				o.rec.EtcdMemberID = memberID(o.hostnameLocked() + o.addr())
			}
		}
	}

	m.s.syncMembersLocked()
	_ = m.s.saveLocked()

	if !restored {
		m.s.kube.ensureUp()
	}

	return &machineapi.BootstrapResponse{Messages: []*machineapi.Bootstrap{{}}}, nil
}

// Kubeconfig streams a tar.gz holding an admin kubeconfig signed by the cluster CA.
func (m *machineServer) Kubeconfig(_ *emptypb.Empty, srv grpc.ServerStreamingServer[common.Data]) error {
	n := targetNode(srv.Context())
	if err := checkControlPlane(n, "kubeconfig"); err != nil {
		return err
	}

	m.s.mu.Lock()
	cfg := n.cfg
	m.s.mu.Unlock()

	data, err := adminKubeconfig(cfg)
	if err != nil {
		return err
	}

	var buf bytes.Buffer

	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)

	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "kubeconfig", Size: int64(len(data)), ModTime: time.Now(), Mode: 0o600}); err != nil {
		return err
	}

	if _, err := tw.Write(data); err != nil {
		return err
	}

	if err := tw.Close(); err != nil {
		return err
	}

	if err := zw.Close(); err != nil {
		return err
	}

	return srv.Send(&common.Data{Bytes: buf.Bytes()})
}

func adminKubeconfig(cfg *parsedConfig) ([]byte, error) {
	if cfg.K8sCA == nil || cfg.K8sCA.Key == nil {
		return nil, status.Error(codes.FailedPrecondition, "k8s API server CA config is not set")
	}

	if cfg.Endpoint == nil || cfg.ClusterName == "" {
		return nil, status.Error(codes.FailedPrecondition, "cluster name and endpoint are not configured (.cluster.controlPlane.endpoint or KubeClusterConfig document)")
	}

	kp, err := issue(certRequest{CommonName: "admin", Organization: []string{"system:masters"}, Client: true}, cfg.K8sCA)
	if err != nil {
		return nil, err
	}

	b64 := base64.StdEncoding.EncodeToString
	user := "admin@" + cfg.ClusterName

	return fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: %[1]s
  cluster:
    server: %[2]s
    certificate-authority-data: %[3]s
contexts:
- name: %[4]s
  context:
    cluster: %[1]s
    namespace: default
    user: %[4]s
current-context: %[4]s
users:
- name: %[4]s
  user:
    client-certificate-data: %[5]s
    client-key-data: %[6]s
`, cfg.ClusterName, cfg.Endpoint.String(), b64(cfg.K8sCA.CertPEM), user, b64(kp.CertPEM), b64(kp.KeyPEM)), nil
}

type svcDef struct {
	id      string
	running bool
	healthy bool
	state   string
	msg     string
}

// serviceSet: the services a node of this type runs in its current phase.
func serviceSet(v nodeView) []svcDef {
	up := v.Stage == runtime.MachineStageRunning || v.Stage == runtime.MachineStageMaintenance
	if !up {
		return nil
	}

	run := func(id string) svcDef {
		return svcDef{id: id, running: true, healthy: true, state: "Running", msg: "Health check successful"}
	}

	if v.Config == nil {
		return []svcDef{run("apid"), run("machined"), run("udevd")}
	}

	out := []svcDef{run("apid"), run("auditd"), run("containerd"), run("cri"), run("dashboard"), run("kubelet"), run("machined"), run("syslogd"), run("udevd")}

	if v.Config.Type.IsControlPlane() {
		out = append(out, run("trustd"))
		if v.EtcdRunning {
			out = append(out, run("etcd"))
		} else {
			out = append(out, svcDef{id: "etcd", state: "Preparing", msg: "Running pre state"})
		}
	}

	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })

	return out
}

// ServiceList implements MachineService.ServiceList.
func (m *machineServer) ServiceList(ctx context.Context, _ *emptypb.Empty) (*machineapi.ServiceListResponse, error) {
	n := targetNode(ctx)

	m.s.mu.Lock()
	v := n.viewLocked()
	m.s.mu.Unlock()

	ts := timestamppb.New(time.Now().Add(-time.Minute))

	var infos []*machineapi.ServiceInfo

	for _, svc := range serviceSet(v) {
		info := &machineapi.ServiceInfo{
			Id:    svc.id,
			State: svc.state,
			Events: &machineapi.ServiceEvents{Events: []*machineapi.ServiceEvent{
				{Msg: "Starting service", State: "Preparing", Ts: ts},
			}},
			Health: &machineapi.ServiceHealth{Unknown: !svc.running, Healthy: svc.healthy, LastChange: ts},
		}

		if svc.running {
			info.Events.Events = append(info.Events.Events, &machineapi.ServiceEvent{Msg: svc.msg, State: "Running", Ts: ts})
			info.Health.LastMessage = ""
		} else {
			info.Events.Events[0].Msg = svc.msg
		}

		infos = append(infos, info)
	}

	return &machineapi.ServiceListResponse{Messages: []*machineapi.ServiceList{{Services: infos}}}, nil
}

// EtcdMemberList lists the control planes that joined etcd.
func (m *machineServer) EtcdMemberList(ctx context.Context, _ *machineapi.EtcdMemberListRequest) (*machineapi.EtcdMemberListResponse, error) {
	n := targetNode(ctx)
	if err := checkControlPlane(n, "member list"); err != nil {
		return nil, err
	}

	m.s.mu.Lock()
	defer m.s.mu.Unlock()

	if !n.rec.EtcdMember {
		return nil, status.Error(codes.Unavailable, "etcd is not running on this node: the cluster is not bootstrapped yet (context deadline exceeded)")
	}

	if !m.s.hasQuorumLocked() {
		return nil, errNoQuorum() // the member list is a linearizable read
	}

	var members []*machineapi.EtcdMember

	for _, o := range m.s.nodes {
		if o.rec.EtcdMember && o.cfg != nil && o.cfg.ClusterID == n.cfg.ClusterID {
			members = append(members, &machineapi.EtcdMember{
				Id:         o.rec.EtcdMemberID,
				Hostname:   o.hostnameLocked(),
				PeerUrls:   []string{fmt.Sprintf("https://%s:2380", o.addr())},
				ClientUrls: []string{fmt.Sprintf("https://%s:2379", o.addr())},
			})
		}
	}

	sort.Slice(members, func(i, j int) bool { return members[i].Hostname < members[j].Hostname })

	legacy := make([]string, 0, len(members))
	for _, mb := range members {
		legacy = append(legacy, mb.Hostname)
	}

	return &machineapi.EtcdMemberListResponse{Messages: []*machineapi.EtcdMembers{{LegacyMembers: legacy, Members: members}}}, nil
}

// EtcdSnapshot streams a snapshot of the lab's real etcd (taken with etcdctl).
func (m *machineServer) EtcdSnapshot(_ *machineapi.EtcdSnapshotRequest, srv grpc.ServerStreamingServer[common.Data]) error {
	n := targetNode(srv.Context())
	if err := checkControlPlane(n, "etcd snapshot"); err != nil {
		return err
	}

	m.s.mu.Lock()
	member := n.rec.EtcdMember
	m.s.mu.Unlock()

	if !member {
		return status.Error(codes.FailedPrecondition, "etcd is not running on this node")
	}

	path, cleanup, err := m.s.kube.snapshot(srv.Context())
	if err != nil {
		return status.Errorf(codes.Unavailable, "failed to create etcd snapshot: %v", err)
	}
	defer cleanup()

	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close() //nolint:errcheck

	buf := make([]byte, 1<<20)

	for {
		k, err := f.Read(buf)
		if k > 0 {
			if serr := srv.Send(&common.Data{Bytes: append([]byte(nil), buf[:k]...)}); serr != nil {
				return serr
			}
		}

		if err == io.EOF {
			return nil
		}

		if err != nil {
			return err
		}
	}
}

// Reboot takes the node down and up; a staged configuration becomes active.
func (m *machineServer) Reboot(ctx context.Context, _ *machineapi.RebootRequest) (*machineapi.RebootResponse, error) {
	n := targetNode(ctx)
	actor := newID()

	m.s.log.Printf("%s: reboot via API received. actor id: %s", n.def.Name, actor)

	m.s.mu.Lock()
	n.events.addSequence("reboot", actor)
	n.stage = runtime.MachineStageRebooting
	n.syncLocked()       // MachineStatus shows "rebooting" at once, as Talos does
	m.s.noteEtcdLocked() // services stop: a control plane's etcd is down until it is back
	m.s.mu.Unlock()

	time.AfterFunc(200*time.Millisecond, func() {
		m.s.mu.Lock()
		defer m.s.mu.Unlock()

		_ = n.bootLocked(m.s.opts.BootDelay) //nolint:errcheck
	})

	return &machineapi.RebootResponse{Messages: []*machineapi.Reboot{{ActorId: actor}}}, nil
}

// ephemeralOnly: a reset that wipes the EPHEMERAL partition and keeps STATE (the machine config),
// `talosctl reset --system-labels-to-wipe=EPHEMERAL`; without system labels every partition is wiped.
func ephemeralOnly(in *machineapi.ResetRequest) bool {
	labels := map[string]bool{}
	for _, p := range in.GetSystemPartitionsToWipe() {
		labels[p.GetLabel()] = true
	}

	return labels["EPHEMERAL"] && !labels["STATE"]
}

// Reset wipes the node back to maintenance mode (leaving etcd and Kubernetes); with
// system_partitions_to_wipe EPHEMERAL only, it wipes etcd's data and keeps the config (recover.go).
func (m *machineServer) Reset(ctx context.Context, in *machineapi.ResetRequest) (*machineapi.ResetResponse, error) {
	n := targetNode(ctx)
	actor := newID()

	m.s.mu.Lock()
	if n.configuredLocked() && n.cfg.Type.IsControlPlane() && in.Graceful && n.rec.EtcdMember {
		members := 0

		for _, o := range m.s.nodes {
			if o.rec.EtcdMember && o.cfg != nil && o.cfg.ClusterID == n.cfg.ClusterID {
				members++
			}
		}

		if members == 1 {
			m.s.mu.Unlock()

			return nil, status.Error(codes.FailedPrecondition, "failed to leave etcd: etcd member is the last one in the cluster, use --graceful=false to reset it")
		}
	}

	m.s.log.Printf("%s: reset request received (graceful=%v reboot=%v). actor id: %s", n.def.Name, in.Graceful, in.Reboot, actor)
	n.events.addSequence("reset", actor)
	n.stage = runtime.MachineStageResetting
	m.s.noteEtcdLocked()
	m.s.mu.Unlock()

	if ephemeralOnly(in) {
		time.AfterFunc(200*time.Millisecond, func() {
			m.s.mu.Lock()
			defer m.s.mu.Unlock()

			m.s.wipeEphemeralLocked(n)

			if in.Reboot {
				_ = n.bootLocked(m.s.opts.BootDelay) //nolint:errcheck
			} else {
				n.powerOffLocked()
			}

			m.s.syncMembersLocked()
			_ = m.s.saveLocked()
		})

		return &machineapi.ResetResponse{Messages: []*machineapi.Reset{{ActorId: actor}}}, nil
	}

	time.AfterFunc(200*time.Millisecond, func() {
		m.s.mu.Lock()
		defer m.s.mu.Unlock()

		if n.rec.KubeNode {
			m.s.kube.stopNode(n)
		}

		n.rec.ActiveConfig, n.rec.PersistedConfig = "", ""
		n.rec.EtcdMember, n.rec.EtcdMemberID = false, 0
		n.rec.Installed = false
		n.cfg, n.serverCert = nil, nil

		if in.Reboot {
			_ = n.bootLocked(m.s.opts.BootDelay) //nolint:errcheck
		} else {
			n.powerOffLocked()
		}

		m.s.syncMembersLocked()
		_ = m.s.saveLocked()
	})

	return &machineapi.ResetResponse{Messages: []*machineapi.Reset{{ActorId: actor}}}, nil
}

// Upgrade (legacy API, talosctl --legacy) installs the image and reboots; unlike the 1.13+
// LifecycleService it checks on a control plane that etcd keeps quorum without this member
// (skipped with force).
func (m *machineServer) Upgrade(ctx context.Context, in *machineapi.UpgradeRequest) (*machineapi.UpgradeResponse, error) {
	n := targetNode(ctx)
	actor := newID()

	m.s.mu.Lock()
	if n.isControlPlaneLocked() && n.rec.EtcdMember && !in.GetForce() { //nolint:staticcheck
		members, up, _ := m.s.etcdTallyLocked()
		if !n.etcdUpLocked() || up-1 < quorumOf(members) {
			m.s.mu.Unlock()

			return nil, status.Errorf(codes.FailedPrecondition, "etcd health check failed: %d of %d members up, upgrading this one would lose quorum", up, members)
		}
	}
	m.s.mu.Unlock()

	if err := m.s.startUpgrade(n, in.GetImage(), in.GetStage(), actor); err != nil {
		return nil, err
	}

	return &machineapi.UpgradeResponse{Messages: []*machineapi.Upgrade{{Ack: "Upgrade request received", ActorId: actor}}}, nil
}

func imageTag(image string) string {
	if i := strings.LastIndex(image, ":"); i >= 0 && !strings.Contains(image[i:], "/") {
		return image[i+1:]
	}

	return ""
}

func (s *Sim) startUpgrade(n *Node, image string, stage bool, actor string) error {
	tag := imageTag(image)
	if tag == "" {
		return status.Errorf(codes.InvalidArgument, "error validating installer image %q: no tag", image)
	}

	s.mu.Lock()
	defer s.mu.Unlock()

	if !n.configuredLocked() {
		return status.Error(codes.FailedPrecondition, "upgrade is not supported in maintenance mode by the simulator")
	}

	s.log.Printf("%s: upgrade to %s (stage=%v). actor id: %s", n.def.Name, image, stage, actor)

	if err := s.installLocked(n, image); err != nil {
		return err
	}

	n.events.addSequence("upgrade", actor)

	if !stage {
		n.stage = runtime.MachineStageUpgrading
		s.noteEtcdLocked()

		time.AfterFunc(200*time.Millisecond, func() {
			s.mu.Lock()
			defer s.mu.Unlock()

			_ = n.bootLocked(s.opts.BootDelay) //nolint:errcheck
		})
	}

	return nil
}

// Read serves the one file talosctl's action tracker reads (the boot ID).
func (m *machineServer) Read(in *machineapi.ReadRequest, srv grpc.ServerStreamingServer[common.Data]) error {
	n := targetNode(srv.Context())
	if in.GetPath() != "/proc/sys/kernel/random/boot_id" {
		return status.Errorf(codes.NotFound, "open %s: no such file or directory", in.GetPath())
	}

	m.s.mu.Lock()
	id := n.rec.BootID
	m.s.mu.Unlock()

	return srv.Send(&common.Data{Bytes: []byte(id + "\n")})
}

// Hostname implements MachineService.Hostname.
func (m *machineServer) Hostname(ctx context.Context, _ *emptypb.Empty) (*machineapi.HostnameResponse, error) {
	n := targetNode(ctx)

	m.s.mu.Lock()
	defer m.s.mu.Unlock()

	return &machineapi.HostnameResponse{Messages: []*machineapi.Hostname{{Hostname: n.hostnameLocked()}}}, nil
}

// certPEMs is a helper for tests: the PEM of a certificate.
func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// installDiskProblem: the unattended install's disk selector (Talos 1.14 configs) must match
// one of the node's disks; "" when it does or when the config has none.
func installDiskProblem(ctx context.Context, st state.State, pc *parsedConfig) (problem string) {
	defer func() {
		if r := recover(); r != nil {
			problem = ""
		}
	}()

	ui := pc.Provider.UnattendedInstallConfig()
	if ui == nil {
		return ""
	}

	expr := ui.VolumeSelector()
	if expr.IsZero() {
		return ""
	}

	disks, err := blockhelpers.MatchDisks(ctx, st, &expr)
	if err != nil {
		return err.Error()
	}

	if len(disks) == 0 {
		return fmt.Sprintf("no disks matched the expression: %s", expr.String())
	}

	return ""
}
