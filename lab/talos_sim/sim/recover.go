// SPDX-License-Identifier: GPL-3.0-or-later

package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/siderolabs/talos/pkg/machinery/api/common"
	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
)

// etcd disaster recovery as Talos 1.14 does it:
//
//   - `talosctl reset --graceful=false --reboot --system-labels-to-wipe=EPHEMERAL` wipes a
//     node's EPHEMERAL partition (etcd's data and /var/lib) and keeps STATE (the machine config);
//     once every control plane of the cluster is wiped, no etcd data is left anywhere: the lab's
//     etcd is stopped and its data directory deleted, and each control plane's etcd waits in
//     Preparing for a bootstrap;
//   - EtcdRecover (talosctl bootstrap --recover-from uploads the file first) writes the stream to
//     /var/lib/etcd.snapshot; machined refuses it with FailedPrecondition "etcd service is not
//     ready for recovery yet" while /var/lib does not exist (maintenance mode, booting), and on a
//     worker;
//   - Bootstrap with recover_etcd (refused with AlreadyExists "etcd data directory is not empty"
//     as any bootstrap while the node holds etcd data) restores the uploaded snapshot: the lab's
//     etcd is restored with etcdutl (lab/kube_etcd.py) and started on the same address and ports;
//     the running kube-apiserver reconnects. The uploaded file is deleted afterwards, as Talos does.
//
// Where the simulator differs: Talos checks the snapshot in etcd's pre-start (the Bootstrap call
// returns and the etcd service fails); the simulator restores before it answers, and a missing or
// corrupt snapshot fails the Bootstrap call itself with the message etcd's service would log.

const recoverySnapshotPath = "/var/lib/etcd.snapshot" // constants.EtcdRecoverySnapshotPath

func (s *Sim) recoverySnapshot(n *Node) string {
	return filepath.Join(s.opts.StateDir, "etcd-recovery", n.def.Name+".snapshot")
}

// EtcdRecover implements MachineService.EtcdRecover: the snapshot a later recover bootstrap uses.
func (m *machineServer) EtcdRecover(srv grpc.ClientStreamingServer[common.Data, machineapi.EtcdRecoverResponse]) error {
	n := targetNode(srv.Context())

	m.s.mu.Lock()
	ready := n.configuredLocked() && n.stage == runtime.MachineStageRunning && n.rec.PowerOn && !n.booting
	m.s.mu.Unlock()

	if !ready {
		return status.Error(codes.FailedPrecondition, "etcd service is not ready for recovery yet")
	}

	if err := checkControlPlane(n, "etcd recover"); err != nil {
		return err
	}

	path := m.s.recoverySnapshot(n)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}

	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("error creating etcd recovery snapshot: %w", err)
	}

	ok := false

	defer func() {
		f.Close() //nolint:errcheck

		if !ok {
			os.Remove(path) //nolint:errcheck
		}
	}()

	size := 0

	for {
		msg, err := srv.Recv()
		if errors.Is(err, io.EOF) {
			break
		}

		if err != nil {
			return err
		}

		k, err := f.Write(msg.GetBytes())
		if err != nil {
			return fmt.Errorf("error writing snapshot: %w", err)
		}

		size += k
	}

	if err := f.Sync(); err != nil {
		return fmt.Errorf("error fsyncing snapshot: %w", err)
	}

	ok = true

	m.s.log.Printf("%s: etcd recovery snapshot uploaded (%d bytes) to %s", n.def.Name, size, recoverySnapshotPath)

	return srv.SendAndClose(&machineapi.EtcdRecoverResponse{Messages: []*machineapi.EtcdRecover{{}}})
}

// wipeEphemeralLocked: a reset that wipes EPHEMERAL only (s.mu held). The node keeps its machine
// config; its etcd data and the uploaded recovery snapshot are gone. When no control plane of
// the cluster holds etcd data any more, the cluster's etcd (the lab's) is stopped and wiped.
func (s *Sim) wipeEphemeralLocked(n *Node) {
	n.rec.EtcdMember, n.rec.EtcdMemberID = false, 0
	os.Remove(s.recoverySnapshot(n)) //nolint:errcheck

	cl := &s.sf.Cluster
	if n.cfg == nil || !n.cfg.Type.IsControlPlane() || !cl.Bootstrapped || n.cfg.ClusterID != cl.ClusterID {
		return
	}

	for _, o := range s.nodes {
		if o.rec.EtcdMember && o.cfg != nil && o.cfg.ClusterID == cl.ClusterID {
			return // etcd data left on another control plane
		}
	}

	s.log.Printf("%s: EPHEMERAL wiped on the last control plane holding etcd data: the cluster's etcd is gone", n.def.Name)
	cl.Bootstrapped = false
	cl.BootstrapNode = ""

	if s.kube.enabled() && cl.KubeUp {
		done := s.kube.etcdOp("stop", "--dir", s.kube.dir(), "--wipe")

		go func() {
			if err := <-done; err != nil {
				s.log.Printf("stopping the lab's etcd: %v", err)
			}
		}()
	}
}

// etcdOp runs lab/kube_etcd.py; operations run one at a time in the order asked, so a restore
// never overtakes the stop and wipe before it.
func (k *kubeManager) etcdOp(args ...string) <-chan error {
	done := make(chan error, 1)

	k.etcdOnce.Do(func() {
		k.etcdQueue = make(chan func(), 16)

		go func() {
			for op := range k.etcdQueue {
				op()
			}
		}()
	})

	k.etcdQueue <- func() {
		ctx, cancel := context.WithTimeout(k.s.ctx, 2*time.Minute)
		defer cancel()

		script := filepath.Join(filepath.Dir(k.s.opts.KubeScript), "kube_etcd.py")
		out, err := exec.CommandContext(ctx, labPython(), append([]string{script}, args...)...).CombinedOutput()

		if err != nil {
			msg := strings.TrimSpace(string(out))
			msg = strings.TrimPrefix(msg, "lab/kube_etcd.py: ")
			done <- fmt.Errorf("%s", msg)

			return
		}

		k.s.log.Printf("lab/kube_etcd.py %s: %s", args[0], strings.TrimSpace(string(out)))
		done <- nil
	}

	return done
}

// labPython: the lab's virtualenv Python (lab/kube runs with it), else python3 from PATH.
func labPython() string {
	cache := os.Getenv("HOMECLUSTER_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir() //nolint:errcheck
		cache = filepath.Join(home, ".cache", "homecluster")
	}

	if p := filepath.Join(cache, "venv", "bin", "python"); fileExists(p) {
		return p
	}

	return "python3"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)

	return err == nil
}

// recoverLocked restores the uploaded snapshot into the cluster's etcd (s.mu held on entry and
// on return; released while etcdutl and etcd run).
func (s *Sim) recoverLocked(n *Node, skipHashCheck bool) error {
	path := s.recoverySnapshot(n)

	st, err := os.Stat(path)
	if err != nil {
		return status.Errorf(codes.FailedPrecondition, "error verifying snapshot: open %s: no such file or directory", recoverySnapshotPath)
	}

	if s.recovering {
		return status.Error(codes.FailedPrecondition, "bootstrap is not available yet: a recovery is in progress")
	}

	s.log.Printf("%s: recovering etcd from the uploaded snapshot (%d bytes)", n.def.Name, st.Size())

	if s.kube.enabled() {
		args := []string{"restore", "--dir", s.kube.dir(), "--snapshot", path}
		if skipHashCheck {
			args = append(args, "--skip-hash-check")
		}

		s.recovering = true
		s.mu.Unlock()
		err = <-s.kube.etcdOp(args...)
		s.mu.Lock()
		s.recovering = false

		if err != nil {
			return status.Errorf(codes.FailedPrecondition, "error recovering from the snapshot: %v", err)
		}
	}

	os.Remove(path) //nolint:errcheck

	return nil
}
