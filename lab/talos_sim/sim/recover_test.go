// SPDX-License-Identifier: GPL-3.0-or-later

package sim

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/emptypb"

	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
)

func (f *fixture) etcdState(c *client.Client, node string) string {
	f.t.Helper()

	resp, err := c.MachineClient.ServiceList(client.WithNode(ctxT(f.t), node), &emptypb.Empty{})
	if err != nil {
		return "unreachable: " + err.Error()
	}

	for _, svc := range resp.GetMessages()[0].GetServices() {
		if svc.GetId() == "etcd" {
			return svc.GetState()
		}
	}

	return "absent"
}

func (f *fixture) waitEtcdState(c *client.Client, want string, nodes ...string) {
	f.t.Helper()

	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ok := true

		for _, n := range nodes {
			if f.etcdState(c, n) != want {
				ok = false
			}
		}

		if ok {
			return
		}

		time.Sleep(50 * time.Millisecond)
	}

	for _, n := range nodes {
		f.t.Errorf("%s: etcd %s, want %s", n, f.etcdState(c, n), want)
	}

	f.t.FailNow()
}

func wipeEphemeral(ctx context.Context, c *client.Client, node string) error {
	return c.ResetGeneric(client.WithNode(ctx, node), &machineapi.ResetRequest{
		Graceful: false, Reboot: true,
		SystemPartitionsToWipe: []*machineapi.ResetPartitionSpec{{Label: "EPHEMERAL", Wipe: true}},
	})
}

// The recover flow of `talosctl bootstrap --recover-from` and the cases machined refuses.
func TestEtcdRecoverAfterEphemeralWipe(t *testing.T) {
	genOnce.Do(generateConfigs)

	if genErr != nil {
		t.Fatal(genErr)
	}

	f := &fixture{t: t, dir: t.TempDir(), cp: genCP, wk: genWK, tcfg: genTalosconfig, nodes: []NodeDef{
		{Name: "cp1", Address: tn(31)}, {Name: "cp2", Address: tn(32)}, {Name: "cp3", Address: tn(33)}, {Name: "w1", Address: tn(34)},
	}}
	f.start()

	for _, h := range []int{31, 32, 33} {
		f.apply(tn(h), f.cp)
	}

	f.apply(tn(34), f.wk)

	c := f.secure(tn(31))
	ctx := ctxT(t)
	cps := []string{tn(31), tn(32), tn(33)}

	if err := c.Bootstrap(ctx, &machineapi.BootstrapRequest{}); err != nil {
		t.Fatal(err)
	}

	f.waitEtcdUp(3)

	// a worker runs no etcd
	if _, err := c.EtcdRecover(client.WithNode(ctx, tn(34)), bytes.NewReader([]byte("x"))); client.StatusCode(err) != codes.Unimplemented ||
		!strings.Contains(err.Error(), "etcd recover is only available on control plane nodes") {
		t.Errorf("etcd recover on a worker: %v", err)
	}

	// etcd holds data: a recover bootstrap is refused like any bootstrap
	if _, err := c.EtcdRecover(ctx, bytes.NewReader([]byte("snapshot"))); err != nil {
		t.Fatalf("upload while etcd runs (machined accepts it): %v", err)
	}

	err := c.Bootstrap(ctx, &machineapi.BootstrapRequest{RecoverEtcd: true})
	if client.StatusCode(err) != codes.AlreadyExists || !strings.Contains(err.Error(), "etcd data directory is not empty") {
		t.Errorf("recover bootstrap while etcd holds data: %v", err)
	}

	// one control plane wiped while the others hold data: it joins again after its reboot
	if err := wipeEphemeral(ctx, c, tn(32)); err != nil {
		t.Fatal(err)
	}

	f.waitSecure(tn(32))
	f.waitEtcdState(c, "Running", tn(32))

	f.sim.mu.Lock()
	bootstrapped := f.sim.sf.Cluster.Bootstrapped
	f.sim.mu.Unlock()

	if !bootstrapped {
		t.Error("wiping one of three control planes left the cluster without etcd")
	}

	// every control plane wiped: no etcd data anywhere, each etcd waits in Preparing, the
	// uploaded snapshot went with EPHEMERAL
	for _, cp := range cps {
		if err := wipeEphemeral(ctx, c, cp); err != nil {
			t.Fatal(err)
		}
	}

	for _, cp := range cps {
		f.waitSecure(cp)
	}

	f.waitEtcdState(c, "Preparing", cps...)

	if _, err := os.Stat(f.sim.recoverySnapshot(f.sim.byAddr[tn(31)])); !os.IsNotExist(err) {
		t.Errorf("the uploaded snapshot survived the EPHEMERAL wipe: %v", err)
	}

	err = c.Bootstrap(ctx, &machineapi.BootstrapRequest{RecoverEtcd: true})
	if client.StatusCode(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "error verifying snapshot") {
		t.Errorf("recover bootstrap without an uploaded snapshot: %v", err)
	}

	if _, err := c.EtcdRecover(ctx, bytes.NewReader(bytes.Repeat([]byte("s"), 3<<20))); err != nil {
		t.Fatal(err)
	}

	st, err := os.Stat(f.sim.recoverySnapshot(f.sim.byAddr[tn(31)]))
	if err != nil || st.Size() != 3<<20 || st.Mode().Perm() != 0o600 {
		t.Fatalf("uploaded snapshot: %v %v", st, err)
	}

	if err := c.Bootstrap(ctx, &machineapi.BootstrapRequest{RecoverEtcd: true}); err != nil {
		t.Fatalf("recover bootstrap: %v", err)
	}

	f.waitEtcdState(c, "Running", cps...)
	f.waitEtcdUp(3)

	if _, err := os.Stat(f.sim.recoverySnapshot(f.sim.byAddr[tn(31)])); !os.IsNotExist(err) {
		t.Errorf("the snapshot was not deleted after the recovery: %v", err)
	}

	err = c.Bootstrap(client.WithNode(ctx, tn(33)), &machineapi.BootstrapRequest{RecoverEtcd: true})
	if client.StatusCode(err) != codes.AlreadyExists {
		t.Errorf("second recover bootstrap: %v", err)
	}
}
