// SPDX-License-Identifier: GPL-3.0-or-later

package sim

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/cosi-project/runtime/pkg/resource"
	"google.golang.org/grpc/codes"

	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	rtres "github.com/siderolabs/talos/pkg/machinery/resources/runtime"
)

const guestAgentSchematic = "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515"

func factoryImage(schematic, tag string) string {
	return "factory.talos.dev/metal-installer/" + schematic + ":" + tag
}

// newClusterFixture: three bootstrapped control planes, cp3 booted from a schematic with an
// extension.
func newClusterFixture(t *testing.T) *fixture {
	t.Helper()

	genOnce.Do(generateConfigs)

	if genErr != nil {
		t.Fatal(genErr)
	}

	f := &fixture{t: t, dir: t.TempDir(), cp: genCP, wk: genWK, tcfg: genTalosconfig, nodes: []NodeDef{
		{Name: "cp1", Address: tn(21)},
		{Name: "cp2", Address: tn(22)},
		{Name: "cp3", Address: tn(23), Schematic: guestAgentSchematic, Extensions: []string{"siderolabs/qemu-guest-agent"}},
	}}
	f.start()

	for _, h := range []int{21, 22, 23} {
		f.apply(tn(h), f.cp)
	}

	if err := f.secure(tn(21)).Bootstrap(ctxT(t), &machineapi.BootstrapRequest{}); err != nil {
		t.Fatal(err)
	}

	return f
}

func (f *fixture) etcdReport() EtcdReport {
	var r EtcdReport

	getJSON(f.t, f.admin.URL+"/etcd", &r)

	return r
}

func lifecycleUpgrade(ctx context.Context, c *client.Client, node, image string) error {
	stream, err := c.LifecycleClient.Upgrade(client.WithNode(ctx, node), &machineapi.LifecycleServiceUpgradeRequest{
		Source: &machineapi.InstallArtifactsSource{ImageName: image},
	})
	if err != nil {
		return err
	}

	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}

		if err != nil {
			return err
		}

		if p := msg.GetProgress(); p != nil && p.GetExitCode() != 0 {
			return errors.New("upgrade exit code non-zero")
		}
	}
}

func (f *fixture) waitEtcdUp(members int) {
	f.t.Helper()

	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if r := f.etcdReport(); r.Up == members {
			return
		}

		time.Sleep(20 * time.Millisecond)
	}

	f.t.Fatalf("etcd members not all up: %+v", f.etcdReport())
}

func (f *fixture) extensions(c *client.Client, node string) map[string]string {
	f.t.Helper()

	list, err := c.COSI.List(client.WithNode(ctxT(f.t), node), resource.NewMetadata(rtres.NamespaceName, rtres.ExtensionStatusType, "", resource.VersionUndefined))
	if err != nil {
		f.t.Fatal(err)
	}

	out := map[string]string{}

	for _, r := range list.Items {
		spec, ok := r.Spec().(*rtres.ExtensionStatusSpec)
		if !ok {
			f.t.Fatalf("extension status spec %T", r.Spec())
		}

		out[spec.Metadata.Name] = spec.Metadata.Version
	}

	return out
}

func (f *fixture) version(c *client.Client, node string) string {
	f.t.Helper()

	v, err := c.Version(client.WithNode(ctxT(f.t), node))
	if err != nil {
		f.t.Fatal(err)
	}

	return v.Messages[0].Version.Tag
}

func TestRollingUpgradeKeepsQuorumParallelLosesIt(t *testing.T) {
	f := newClusterFixture(t)
	ctx := ctxT(t)
	c := f.secure(tn(21))

	if r := f.etcdReport(); r.Members != 3 || r.Up != 3 || r.Quorum != 2 || !r.HasQuorum {
		t.Fatalf("after bootstrap: %+v", r)
	}

	postJSON(t, f.admin.URL+"/etcd/reset", "{}")

	// one at a time: install (nothing changes until the reboot), reboot, wait for etcd
	for _, h := range []int{21, 22, 23} {
		schematic := EmptySchematic
		if h == 23 {
			schematic = guestAgentSchematic
		}

		if err := lifecycleUpgrade(ctx, c, tn(h), factoryImage(schematic, "v1.14.2")); err != nil {
			t.Fatalf("upgrade %s: %v", tn(h), err)
		}

		if got := f.version(c, tn(h)); got != "v1.14.1" {
			t.Errorf("%s runs %s before its reboot", tn(h), got)
		}

		if err := c.Reboot(client.WithNode(ctx, tn(h))); err != nil {
			t.Fatal(err)
		}

		time.Sleep(50 * time.Millisecond)

		if r := f.etcdReport(); r.Up != 2 {
			t.Errorf("a rebooting control plane's etcd still counted up: %+v", r)
		}

		f.waitEtcdUp(3)
		f.waitSecure(tn(h))

		if got := f.version(c, tn(h)); got != "v1.14.2" {
			t.Errorf("%s runs %s after the upgrade", tn(h), got)
		}
	}

	if r := f.etcdReport(); r.MinUp != 2 || r.QuorumLost != 0 {
		t.Errorf("rolling upgrade: min_up %d quorum_lost %d, want 2 and 0", r.MinUp, r.QuorumLost)
	}

	if ext := f.extensions(c, tn(23)); ext["qemu-guest-agent"] != "sim" || ext["schematic"] != guestAgentSchematic {
		t.Errorf("cp3 lost its extensions on an upgrade that kept its schematic: %v", ext)
	}

	// parallel, like `talosctl upgrade -n cp1,cp2,cp3`: accepted, and etcd loses quorum
	postJSON(t, f.admin.URL+"/etcd/reset", "{}")

	for _, h := range []int{21, 22, 23} {
		if err := lifecycleUpgrade(ctx, c, tn(h), factoryImage(EmptySchematic, "v1.14.3")); err != nil {
			t.Fatalf("parallel upgrade %s: %v", tn(h), err)
		}
	}

	for _, h := range []int{21, 22, 23} {
		if err := c.Reboot(client.WithNode(ctx, tn(h))); err != nil {
			t.Fatal(err)
		}
	}

	time.Sleep(50 * time.Millisecond)

	f.waitEtcdUp(3)

	if r := f.etcdReport(); r.MinUp != 0 || r.QuorumLost != 1 {
		t.Errorf("parallel upgrade: min_up %d quorum_lost %d, want 0 and 1", r.MinUp, r.QuorumLost)
	}

	f.waitSecure(tn(23))

	// the empty-schematic image dropped cp3's extension
	if ext := f.extensions(c, tn(23)); len(ext) != 1 || ext["schematic"] != EmptySchematic {
		t.Errorf("cp3 after an empty-schematic upgrade: %v", ext)
	}

	// an unknown schematic cannot be pulled
	err := lifecycleUpgrade(ctx, c, tn(21), factoryImage(strings.Repeat("0", 64), "v1.14.3"))
	if client.StatusCode(err) != codes.Internal || !strings.Contains(err.Error(), "not found") {
		t.Errorf("upgrade with an unknown schematic: %v", err)
	}
}

func TestForfeitLeadershipAlarmsAndNoQuorum(t *testing.T) {
	f := newClusterFixture(t)
	ctx := ctxT(t)
	c := f.secure(tn(21))

	leaderOf := func() uint64 {
		st, err := c.EtcdStatus(client.WithNode(ctx, tn(21)))
		if err != nil {
			t.Fatal(err)
		}

		return st.Messages[0].MemberStatus.Leader
	}

	leader := leaderOf()

	var leaderAddr string

	for _, h := range []int{21, 22, 23} {
		st, err := c.EtcdStatus(client.WithNode(ctx, tn(h)))
		if err != nil {
			t.Fatal(err)
		}

		if st.Messages[0].MemberStatus.MemberId == leader {
			leaderAddr = tn(h)
		}
	}

	resp, err := c.EtcdForfeitLeadership(client.WithNode(ctx, leaderAddr), &machineapi.EtcdForfeitLeadershipRequest{})
	if err != nil || resp.Messages[0].Member == "" {
		t.Fatalf("forfeit on the leader: %v %v", resp, err)
	}

	if leaderOf() == leader {
		t.Error("leadership did not move")
	}

	// the new leader stays leader while it is up, and leadership is not lost by a follower reboot
	if r := f.etcdReport(); r.Forfeits != 1 || r.LeaderDown != 0 {
		t.Errorf("after forfeit: %+v", r)
	}

	// alarms
	postJSON(t, f.admin.URL+"/etcd/alarms", `{"address": "`+tn(22)+`", "alarm": "NOSPACE"}`)

	al, err := c.EtcdAlarmList(client.WithNode(ctx, tn(21)))
	if err != nil || len(al.Messages[0].MemberAlarms) != 1 || al.Messages[0].MemberAlarms[0].Alarm != machineapi.EtcdMemberAlarm_NOSPACE {
		t.Errorf("alarm list: %v %v", al, err)
	}

	if _, err = c.EtcdAlarmDisarm(client.WithNode(ctx, tn(21))); err != nil {
		t.Fatal(err)
	}

	if al, _ = c.EtcdAlarmList(client.WithNode(ctx, tn(21))); len(al.Messages[0].MemberAlarms) != 0 {
		t.Errorf("alarms after disarm: %v", al)
	}

	// two of three down: no quorum; the member list fails, the legacy upgrade refuses
	postJSON(t, f.admin.URL+"/power", `{"address": "`+tn(22)+`", "state": "off"}`)

	if _, err = c.UpgradeWithOptions(client.WithNode(ctx, tn(21)), client.WithUpgradeImage(factoryImage(EmptySchematic, "v1.14.2"))); client.StatusCode(err) != codes.FailedPrecondition { //nolint:staticcheck
		t.Errorf("legacy upgrade with one member down: %v", err)
	}

	postJSON(t, f.admin.URL+"/power", `{"address": "`+tn(23)+`", "state": "off"}`)

	if _, err = c.EtcdMemberList(client.WithNode(ctx, tn(21)), &machineapi.EtcdMemberListRequest{}); client.StatusCode(err) != codes.Unavailable || !strings.Contains(err.Error(), "no leader") {
		t.Errorf("member list without quorum: %v", err)
	}

	if r := f.etcdReport(); r.HasQuorum || r.Up != 1 || r.QuorumLost != 1 {
		t.Errorf("two members off: %+v", r)
	}
}
