// SPDX-License-Identifier: GPL-3.0-or-later

package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/emptypb"

	clusterapi "github.com/siderolabs/talos/pkg/machinery/api/cluster"
	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	talosconfig "github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/resources/block"
	"github.com/siderolabs/talos/pkg/machinery/resources/config"
	rtres "github.com/siderolabs/talos/pkg/machinery/resources/runtime"
)

// Test nodes live on a random 127.X.Y.0/24 (any loopback address can be bound) so that lab
// simulators and other engineers' runs on 127.0.x.y are unaffected.
var testNet = func() string {
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid()))) //nolint:gosec

	return fmt.Sprintf("127.%d.%d.", 100+r.IntN(100), r.IntN(250))
}()

func tn(host int) string { return fmt.Sprintf("%s%d", testNet, host) }

var testNodes = []NodeDef{
	{Name: "cp1", Address: tn(11)},
	{Name: "w1", Address: tn(12), Disks: []DiskDef{{ID: "sda", SizeGB: 20}}},
	{Name: "cp2", Address: tn(13)},
	{Name: "v1", Address: tn(14), Disks: []DiskDef{{ID: "vda", SizeGB: 32}}},
}

type fixture struct {
	t     *testing.T
	dir   string
	sim   *Sim
	cp    []byte
	wk    []byte
	tcfg  *clientconfig.Config
	admin *httptest.Server
	nodes []NodeDef // default testNodes
}

// generated once per test binary: secrets (an RSA service-account key) are slow to make
var (
	genOnce        sync.Once
	genCP, genWK   []byte
	genTalosconfig *clientconfig.Config
	genErr         error
)

func generateConfigs() {
	bundle, err := secrets.NewBundle(secrets.NewFixedClock(time.Now()), talosconfig.TalosVersionCurrent)
	if err != nil {
		genErr = err

		return
	}

	in, err := generate.NewInput("lab", "https://"+tn(10)+":6443", "1.35.0", generate.WithSecretsBundle(bundle), generate.WithInstallDisk("/dev/sda"))
	if err != nil {
		genErr = err

		return
	}

	for _, typ := range []machine.Type{machine.TypeControlPlane, machine.TypeWorker} {
		c, err := in.Config(typ)
		if err != nil {
			genErr = err

			return
		}

		b, err := c.Bytes()
		if err != nil {
			genErr = err

			return
		}

		if typ == machine.TypeControlPlane {
			genCP = b
		} else {
			genWK = b
		}
	}

	genTalosconfig, genErr = in.Talosconfig()
}

func newFixture(t *testing.T) *fixture {
	t.Helper()

	genOnce.Do(generateConfigs)

	if genErr != nil {
		t.Fatal(genErr)
	}

	f := &fixture{t: t, dir: t.TempDir(), cp: genCP, wk: genWK, tcfg: genTalosconfig}
	f.start()

	return f
}

func (f *fixture) start() {
	nodes := f.nodes
	if nodes == nil {
		nodes = testNodes
	}

	s, err := New(Options{StateDir: f.dir, Nodes: nodes, BootDelay: 20 * time.Millisecond, InstallDelay: 50 * time.Millisecond})
	if err != nil {
		f.t.Fatal(err)
	}

	if err := s.Start(); err != nil {
		f.t.Fatal(err)
	}

	f.sim = s
	f.admin = httptest.NewServer(s.Handler())
	f.t.Cleanup(f.stop)
}

func (f *fixture) stop() {
	if f.sim != nil {
		f.admin.Close()
		f.sim.Stop()
		f.sim = nil
	}
}

func (f *fixture) insecure(addr string) *client.Client {
	c, err := client.New(context.Background(), client.WithMaintenanceMode(addr, nil))
	if err != nil {
		f.t.Fatal(err)
	}

	f.t.Cleanup(func() { c.Close() }) //nolint:errcheck

	return c
}

func (f *fixture) secure(endpoint string) *client.Client {
	c, err := client.New(context.Background(), client.WithConfig(f.tcfg), client.WithEndpoints(endpoint))
	if err != nil {
		f.t.Fatal(err)
	}

	f.t.Cleanup(func() { c.Close() }) //nolint:errcheck

	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)

	return ctx
}

func (f *fixture) waitSecure(addr string) {
	deadline := time.Now().Add(10 * time.Second)

	for time.Now().Before(deadline) {
		c, err := client.New(context.Background(), client.WithConfig(f.tcfg), client.WithEndpoints(addr))
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err = c.Version(ctx)

			cancel()
			c.Close() //nolint:errcheck

			if err == nil {
				return
			}
		}

		time.Sleep(50 * time.Millisecond)
	}

	f.t.Fatalf("%s never answered with mutual TLS", addr)
}

func (f *fixture) apply(addr string, cfg []byte) {
	_, err := f.insecure(addr).ApplyConfiguration(ctxT(f.t), &machineapi.ApplyConfigurationRequest{Data: cfg, Mode: machineapi.ApplyConfigurationRequest_AUTO})
	if err != nil {
		f.t.Fatalf("apply to %s: %v", addr, err)
	}

	f.waitSecure(addr)
}

func TestMaintenanceMode(t *testing.T) {
	f := newFixture(t)
	ctx := ctxT(t)
	c := f.insecure(tn(11))

	v, err := c.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}

	if got := v.Messages[0].Version.Tag; got != "v1.14.1" {
		t.Errorf("version tag %q", got)
	}

	disks, err := c.COSI.List(ctx, resource.NewMetadata(block.NamespaceName, block.DiskType, "", resource.VersionUndefined))
	if err != nil {
		t.Fatal(err)
	}

	if len(disks.Items) != 2 || disks.Items[0].Metadata().ID() != "sda" {
		t.Errorf("disks: %v", disks.Items)
	}

	rd, err := c.ResolveResourceKind(ctx, new(resource.Namespace), "disks")
	if err != nil || rd.TypedSpec().Type != block.DiskType {
		t.Errorf("resolve disks: %v %v", rd, err)
	}

	_, err = c.COSI.Get(ctx, resource.NewMetadata(config.NamespaceName, config.MachineConfigType, config.ActiveID, resource.VersionUndefined))
	if client.StatusCode(err) != codes.PermissionDenied {
		t.Errorf("machine config in maintenance: %v", err)
	}

	err = c.Bootstrap(ctx, &machineapi.BootstrapRequest{})
	if client.StatusCode(err) != codes.PermissionDenied {
		t.Errorf("bootstrap in maintenance: %v", err)
	}

	// dry run against maintenance: the whole config is new
	resp, err := c.ApplyConfiguration(ctx, &machineapi.ApplyConfigurationRequest{Data: f.cp, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}

	if md := resp.Messages[0].ModeDetails; !strings.HasPrefix(md, "Dry run summary:\nApplied configuration without a reboot (skipped in dry-run).\nConfig diff:\n\n") || !strings.Contains(md, "+machine:") {
		t.Errorf("dry run: %q", md[:min(len(md), 300)])
	}

	_, err = c.ApplyConfiguration(ctx, &machineapi.ApplyConfigurationRequest{Data: []byte("not: [a config")})
	if client.StatusCode(err) != codes.InvalidArgument {
		t.Errorf("bad config: %v", err)
	}
}

//nolint:gocyclo,cyclop
func TestClusterLifecycle(t *testing.T) {
	f := newFixture(t)
	ctx := ctxT(t)

	f.apply(tn(11), f.cp)
	f.apply(tn(12), f.wk)
	f.apply(tn(13), f.cp)

	// a configured node no longer speaks maintenance mode
	if _, err := f.insecure(tn(11)).Version(ctx); err == nil {
		t.Error("insecure version against a configured node succeeded")
	}

	c := f.secure(tn(11))

	// dry run: no changes, then a change shown as a diff
	resp, err := c.ApplyConfiguration(ctx, &machineapi.ApplyConfigurationRequest{Data: f.cp, DryRun: true, Mode: machineapi.ApplyConfigurationRequest_NO_REBOOT})
	if err != nil {
		t.Fatal(err)
	}

	if md := resp.Messages[0].ModeDetails; !strings.HasSuffix(md, "Config diff:\n\nNo changes.") {
		t.Errorf("dry run same config: %q", md)
	}

	patched := []byte(strings.Replace(string(f.cp), "certSANs: []", "certSANs:\n        - cp1.lab", 1))

	resp, err = c.ApplyConfiguration(ctx, &machineapi.ApplyConfigurationRequest{Data: patched, DryRun: true, Mode: machineapi.ApplyConfigurationRequest_STAGED})
	if err != nil {
		t.Fatal(err)
	}

	if md := resp.Messages[0].ModeDetails; !strings.Contains(md, "Staged configuration to be applied after the next reboot (skipped in dry-run).") || !strings.Contains(md, "+        - cp1.lab") {
		t.Errorf("dry run patched: %q", md)
	}

	// staged apply: active config unchanged until reboot
	if _, err = c.ApplyConfiguration(ctx, &machineapi.ApplyConfigurationRequest{Data: patched, Mode: machineapi.ApplyConfigurationRequest_STAGED}); err != nil {
		t.Fatal(err)
	}

	resp, err = c.ApplyConfiguration(ctx, &machineapi.ApplyConfigurationRequest{Data: f.cp, DryRun: true, Mode: machineapi.ApplyConfigurationRequest_AUTO})
	if err != nil || !strings.HasSuffix(resp.Messages[0].ModeDetails, "No changes.") {
		t.Errorf("active config changed by a staged apply: %v %v", resp, err)
	}

	// bootstrap: worker refused, first control plane once, then AlreadyExists everywhere
	if err = c.Bootstrap(client.WithNode(ctx, tn(12)), &machineapi.BootstrapRequest{}); client.StatusCode(err) != codes.Unimplemented {
		t.Errorf("bootstrap on worker: %v", err)
	}

	if _, err = c.EtcdMemberList(ctx, &machineapi.EtcdMemberListRequest{QueryLocal: true}); err == nil {
		t.Error("etcd members before bootstrap succeeded")
	}

	if err = c.Bootstrap(ctx, &machineapi.BootstrapRequest{}); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}

	for _, node := range []string{tn(11), tn(13)} {
		err = c.Bootstrap(client.WithNode(ctx, node), &machineapi.BootstrapRequest{})
		if client.StatusCode(err) != codes.AlreadyExists || !strings.Contains(err.Error(), "etcd data directory is not empty") {
			t.Errorf("second bootstrap on %s: %v", node, err)
		}
	}

	members, err := c.EtcdMemberList(client.WithNode(ctx, tn(13)), &machineapi.EtcdMemberListRequest{QueryLocal: true})
	if err != nil {
		t.Fatal(err)
	}

	if n := len(members.Messages[0].Members); n != 2 {
		t.Errorf("etcd members: %d", n)
	}

	// one call through one endpoint covering every node (legacy "nodes" metadata)
	vr, err := c.MachineClient.Version(client.WithNodes(ctx, tn(11), tn(12), tn(13)), &emptypb.Empty{})
	if err != nil {
		t.Fatal(err)
	}

	if len(vr.Messages) != 3 || vr.Messages[1].Metadata.Hostname != tn(12) { //nolint:staticcheck
		t.Errorf("aggregated version: %v", vr)
	}

	// server-side health: one call, every node
	hc, err := c.ClusterHealthCheck(ctx, 5*time.Second, &clusterapi.ClusterInfo{})
	if err != nil {
		t.Fatal(err)
	}

	var lines []string

	for {
		msg, err := hc.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Errorf("health: %v (%v)", err, lines)
			}

			break
		}

		lines = append(lines, msg.GetMessage())
	}

	if len(lines) == 0 || lines[len(lines)-1] != "waiting for all k8s nodes to report ready: OK" {
		t.Errorf("health lines: %v", lines)
	}

	// kubeconfig
	kc, err := c.Kubeconfig(ctx)
	if err != nil {
		t.Fatal(err)
	}

	if !strings.Contains(string(kc), "current-context: admin@lab") || !strings.Contains(string(kc), "server: https://"+tn(10)+":6443") {
		t.Errorf("kubeconfig: %s", kc)
	}

	if _, err = c.Kubeconfig(client.WithNode(ctx, tn(12))); client.StatusCode(err) != codes.Unimplemented {
		t.Errorf("kubeconfig on worker: %v", err)
	}

	// services and resources
	sl, err := c.ServiceList(client.WithNode(ctx, tn(13)))
	if err != nil {
		t.Fatal(err)
	}

	found := false

	for _, s := range sl.Messages[0].Services {
		if s.Id == "etcd" && s.State == "Running" {
			found = true
		}
	}

	if !found {
		t.Errorf("etcd not running on cp2: %v", sl)
	}

	mc, err := c.COSI.Get(client.WithNode(ctx, tn(12)), resource.NewMetadata(config.NamespaceName, config.MachineConfigType, config.ActiveID, resource.VersionUndefined))
	if err != nil || mc.Metadata().ID() != config.ActiveID {
		t.Errorf("machineconfig: %v", err)
	}

	// faults: an injected RPC error, then an unreachable node
	postJSON(t, f.admin.URL+"/faults", `{"type":"rpc_error","address":"`+tn(11)+`","method":"Version","code":"Unavailable","message":"boom","count":1}`)

	if _, err = c.Version(ctx); client.StatusCode(err) != codes.Unavailable || !strings.Contains(err.Error(), "boom") {
		t.Errorf("injected error: %v", err)
	}

	if _, err = c.Version(ctx); err != nil {
		t.Errorf("fault with count 1 still active: %v", err)
	}

	postJSON(t, f.admin.URL+"/faults", `{"type":"unreachable","address":"`+tn(13)+`"}`)

	if _, err = c.Version(client.WithNode(ctx, tn(13))); client.StatusCode(err) != codes.Unavailable {
		t.Errorf("unreachable node: %v", err)
	}

	req, _ := http.NewRequest(http.MethodDelete, f.admin.URL+"/faults", nil) //nolint:noctx
	if r, err := http.DefaultClient.Do(req); err == nil {
		r.Body.Close() //nolint:errcheck
	}

	if _, err = c.Version(client.WithNode(ctx, tn(13))); err != nil {
		t.Errorf("after clearing faults: %v", err)
	}

	// power off: proxied calls fail like a dead host
	postJSON(t, f.admin.URL+"/power", `{"address":"`+tn(12)+`","state":"off"}`)

	if _, err = c.Version(client.WithNode(ctx, tn(12))); client.StatusCode(err) != codes.Unavailable || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("powered off node: %v", err)
	}

	// restart the simulator: state survives
	f.stop()
	f.start()
	f.waitSecure(tn(11))

	c = f.secure(tn(11))

	if err = c.Bootstrap(ctx, &machineapi.BootstrapRequest{}); client.StatusCode(err) != codes.AlreadyExists {
		t.Errorf("bootstrap after restart: %v", err)
	}

	// the staged config took effect at the (re)boot
	resp, err = c.ApplyConfiguration(ctx, &machineapi.ApplyConfigurationRequest{Data: patched, DryRun: true, Mode: machineapi.ApplyConfigurationRequest_AUTO})
	if err != nil || !strings.HasSuffix(resp.Messages[0].ModeDetails, "No changes.") {
		t.Errorf("staged config not active after reboot: %v %v", resp, err)
	}

	if _, err = c.Version(client.WithNode(ctx, tn(12))); client.StatusCode(err) != codes.Unavailable {
		t.Errorf("powered-off node came back after restart: %v", err)
	}

	var nodes struct {
		Nodes []NodeStatus `json:"nodes"`
	}

	getJSON(t, f.admin.URL+"/nodes", &nodes)

	if len(nodes.Nodes) != 4 || nodes.Nodes[0].Phase != "running" || nodes.Nodes[1].Power != "off" {
		t.Errorf("nodes: %+v", nodes)
	}
}

func TestResetReturnsToMaintenance(t *testing.T) {
	f := newFixture(t)
	ctx := ctxT(t)

	f.apply(tn(13), f.cp)
	c := f.secure(tn(13))

	if err := c.ResetGeneric(ctx, &machineapi.ResetRequest{Graceful: true, Reboot: true}); err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(5 * time.Second)

	for time.Now().Before(deadline) {
		if _, err := f.insecure(tn(13)).Version(ctx); err == nil {
			return
		}

		time.Sleep(50 * time.Millisecond)
	}

	t.Fatal("node did not come back in maintenance mode after reset")
}

func TestDisksAreStateAPIResources(t *testing.T) {
	ctx := context.Background()

	st, err := newResourceState(ctx)
	if err != nil {
		t.Fatal(err)
	}

	if err := syncResources(ctx, st, nodeView{Disks: DefaultDisks()}); err != nil {
		t.Fatal(err)
	}

	list, err := st.List(ctx, resource.NewMetadata(block.NamespaceName, block.DiskType, "", resource.VersionUndefined))
	if err != nil {
		t.Fatal(err)
	}

	if len(list.Items) != 2 {
		t.Fatalf("disks: %d", len(list.Items))
	}

	d := list.Items[1].(*block.Disk) //nolint:forcetypeassert
	if d.TypedSpec().DevPath != "/dev/sdb" || d.TypedSpec().PrettySize != "100 GB" {
		t.Errorf("sdb: %+v", d.TypedSpec())
	}

	if err := syncResources(ctx, st, nodeView{Disks: DefaultDisks()[:1]}); err != nil {
		t.Fatal(err)
	}

	if _, err := st.Get(ctx, resource.NewMetadata(block.NamespaceName, block.DiskType, "sdb", resource.VersionUndefined)); !state.IsNotFoundError(err) {
		t.Errorf("sdb not pruned: %v", err)
	}
}

func TestParseNodeFlag(t *testing.T) {
	d, err := ParseNodeFlag("cp1=127.0.10.11,disks=sda:32+sdb:200,off")
	if err != nil {
		t.Fatal(err)
	}

	if d.Name != "cp1" || d.Address != "127.0.10.11" || len(d.Disks) != 2 || d.Disks[1].SizeGB != 200 || *d.PoweredOn {
		t.Errorf("%+v", d)
	}

	if _, err := ParseNodeFlag("nonsense"); err == nil {
		t.Error("bad flag accepted")
	}
}

func TestCamelToSnake(t *testing.T) {
	for in, want := range map[string]string{"AlreadyExists": "Already_Exists", "UNAVAILABLE": "UNAVAILABLE", "already_exists": "already_exists"} {
		if got := camelToSnake(in); got != want {
			t.Errorf("%s: %s", in, got)
		}
	}
}

func postJSON(t *testing.T, url, body string) {
	t.Helper()

	r, err := http.Post(url, "application/json", strings.NewReader(body)) //nolint:noctx
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close() //nolint:errcheck

	if r.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(r.Body)
		t.Fatalf("POST %s: %d %s", url, r.StatusCode, b)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()

	r, err := http.Get(url) //nolint:noctx
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close() //nolint:errcheck

	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		t.Fatal(fmt.Errorf("GET %s: %w", url, err))
	}
}

func TestInterruptedBootstrapAndInstallDisk(t *testing.T) {
	f := newFixture(t)
	ctx := ctxT(t)

	// the install disk selector matches no disk of v1: it stays in maintenance mode
	if _, err := f.insecure(tn(14)).ApplyConfiguration(ctx, &machineapi.ApplyConfigurationRequest{Data: f.cp, Mode: machineapi.ApplyConfigurationRequest_AUTO}); err != nil {
		t.Fatal(err)
	}

	time.Sleep(300 * time.Millisecond)

	ms, err := f.insecure(tn(14)).COSI.Get(ctx, resource.NewMetadata("runtime", "MachineStatuses.runtime.talos.dev", "machine", resource.VersionUndefined))
	if err != nil {
		t.Fatal(err)
	}

	st, ok := ms.(*rtres.MachineStatus)
	if !ok || len(st.TypedSpec().Status.UnmetConditions) != 1 || !strings.Contains(st.TypedSpec().Status.UnmetConditions[0].Reason, "no disks matched") {
		t.Errorf("machine status after a failed install: %#v", ms)
	}

	// a bootstrap whose answer is lost: done on the node, AlreadyExists on the retry
	f.apply(tn(11), f.cp)
	postJSON(t, f.admin.URL+"/faults", `{"type":"rpc_error","method":"Bootstrap","code":"Unavailable","after":true,"count":1}`)

	c := f.secure(tn(11))
	if err := c.Bootstrap(ctx, &machineapi.BootstrapRequest{}); client.StatusCode(err) != codes.Unavailable {
		t.Fatalf("interrupted bootstrap: %v", err)
	}

	if err := c.Bootstrap(ctx, &machineapi.BootstrapRequest{}); client.StatusCode(err) != codes.AlreadyExists {
		t.Errorf("retried bootstrap: %v", err)
	}

	var nodes struct {
		Nodes []NodeStatus `json:"nodes"`
	}

	getJSON(t, f.admin.URL+"/nodes", &nodes)

	if got := nodes.Nodes[0].Calls["Bootstrap"]; got != 2 || !nodes.Nodes[0].EtcdMember {
		t.Errorf("cp1: %+v", nodes.Nodes[0])
	}
}
