// SPDX-License-Identifier: GPL-3.0-or-later

package sim

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"strconv"
	"strings"

	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/resource/meta"
	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/cosi-project/runtime/pkg/state/impl/inmem"
	"github.com/cosi-project/runtime/pkg/state/impl/namespaced"
	"github.com/cosi-project/runtime/pkg/state/registry"
	"github.com/dustin/go-humanize"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/extensions"
	"github.com/siderolabs/talos/pkg/machinery/resources/block"
	"github.com/siderolabs/talos/pkg/machinery/resources/cluster"
	"github.com/siderolabs/talos/pkg/machinery/resources/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/etcd"
	"github.com/siderolabs/talos/pkg/machinery/resources/k8s"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
	"github.com/siderolabs/talos/pkg/machinery/resources/v1alpha1"
	"github.com/siderolabs/talos/pkg/machinery/role"
)

// newResourceState builds a node's COSI state with the namespaces and resource definitions
// the simulator serves (what `talosctl get` resolves through the meta namespace).
func newResourceState(ctx context.Context) (state.State, error) {
	st := state.WrapCore(namespaced.NewState(inmem.Build))

	nsRegistry := registry.NewNamespaceRegistry(st)
	if err := nsRegistry.RegisterDefault(ctx); err != nil {
		return nil, err
	}

	rdRegistry := registry.NewResourceRegistry(st)
	if err := rdRegistry.RegisterDefault(ctx); err != nil {
		return nil, err
	}

	for _, ns := range []struct{ name, desc string }{
		{v1alpha1.NamespaceName, "Runtime resources (simulated)."},
		{cluster.NamespaceName, "Cluster membership (simulated)."},
		{config.NamespaceName, "Node configuration (simulated)."},
		{etcd.NamespaceName, "etcd state (simulated)."},
		{k8s.NamespaceName, "Kubernetes node resources (simulated)."},
	} {
		if err := nsRegistry.Register(ctx, ns.name, ns.desc); err != nil {
			return nil, err
		}
	}

	for _, r := range []meta.ResourceWithRD{
		&block.Disk{},
		&cluster.Member{},
		&config.MachineConfig{},
		&config.MachineType{},
		&etcd.Member{},
		&k8s.Nodename{},
		&runtime.MachineStatus{},
		&runtime.ExtensionStatus{},
		&runtime.ImageFactorySchematic{},
		&v1alpha1.Service{},
	} {
		if err := rdRegistry.Register(ctx, r); err != nil {
			return nil, err
		}
	}

	return st, nil
}

// upsert creates or replaces a resource.
func upsert(ctx context.Context, st state.State, r resource.Resource) error {
	existing, err := st.Get(ctx, r.Metadata())
	if err != nil {
		if state.IsNotFoundError(err) {
			return st.Create(ctx, r)
		}

		return err
	}

	if reflect.DeepEqual(existing.Spec(), r.Spec()) {
		return nil // unchanged: keep the version, like a controller that has nothing to do
	}

	r.Metadata().SetVersion(existing.Metadata().Version())

	return st.Update(ctx, r)
}

// prune destroys resources of kind md whose IDs are not in keep.
func prune(ctx context.Context, st state.State, md resource.Metadata, keep map[string]bool) error {
	list, err := st.List(ctx, md)
	if err != nil {
		return err
	}

	for _, r := range list.Items {
		if keep[r.Metadata().ID()] {
			continue
		}

		if err := st.Destroy(ctx, r.Metadata()); err != nil && !state.IsNotFoundError(err) {
			return err
		}
	}

	return nil
}

func diskResource(d DiskDef) *block.Disk {
	r := block.NewDisk(block.NamespaceName, d.ID)
	spec := r.TypedSpec()
	size := d.SizeGB * 1000 * 1000 * 1000
	spec.DevPath = "/dev/" + d.ID
	spec.Size = size
	spec.PrettySize = humanize.Bytes(size)
	spec.IOSize = 512
	spec.SectorSize = 512
	spec.Model = d.Model
	if spec.Model == "" {
		spec.Model = "QEMU HARDDISK"
	}

	spec.Serial = d.Serial
	spec.Transport = d.Transport
	if spec.Transport == "" {
		spec.Transport = "virtio"
	}

	spec.Rotational = d.Rotational
	spec.SubSystem = "/sys/class/block"
	spec.BusPath = fmt.Sprintf("/pci0000:00/0000:00:05.0/0000:01:01.0/virtio2/host2/target2:0:%d/2:0:%d:0", diskIndex(d.ID), diskIndex(d.ID))
	spec.Symlinks = []string{"/dev/disk/by-path/pci-0000:01:01.0-scsi-0:0:" + fmt.Sprint(diskIndex(d.ID)) + ":0"}

	return r
}

func diskIndex(id string) int {
	if id == "" {
		return 0
	}

	return int(id[len(id)-1]-'a') & 0x1f
}

// nodeView is a consistent snapshot of what a node's resources should show.
type nodeView struct {
	Disks        []DiskDef
	Stage        runtime.MachineStage
	Ready        bool
	Config       *parsedConfig
	Hostname     string
	EtcdMemberID uint64
	EtcdRunning  bool
	Members      []memberView
	Version      string
	InstallError string
	Schematic    string
	Extensions   []string
}

type memberView struct {
	ID          string
	Hostname    string
	Address     string
	MachineType machine.Type
	Version     string
}

// syncResources makes a node's COSI state match v.
func syncResources(ctx context.Context, st state.State, v nodeView) error {
	keep := map[string]bool{}

	for _, d := range v.Disks {
		keep[d.ID] = true
		if err := upsert(ctx, st, diskResource(d)); err != nil {
			return err
		}
	}

	if err := prune(ctx, st, resource.NewMetadata(block.NamespaceName, block.DiskType, "", resource.VersionUndefined), keep); err != nil {
		return err
	}

	ms := runtime.NewMachineStatus()
	ms.TypedSpec().Stage = v.Stage
	ms.TypedSpec().Status.Ready = v.Ready

	switch {
	case v.Ready:
	case v.InstallError != "":
		ms.TypedSpec().Status.UnmetConditions = []runtime.UnmetCondition{{Name: "install", Reason: v.InstallError}}
	case v.Config == nil:
		ms.TypedSpec().Status.UnmetConditions = []runtime.UnmetCondition{{Name: "config", Reason: "machine configuration is not applied"}}
	default:
		ms.TypedSpec().Status.UnmetConditions = []runtime.UnmetCondition{{Name: "services", Reason: "etcd: waiting for the cluster bootstrap"}}
	}

	if err := upsert(ctx, st, ms); err != nil {
		return err
	}

	configured := v.Config != nil

	if configured {
		if err := upsert(ctx, st, config.NewMachineConfig(v.Config.Provider)); err != nil {
			return err
		}

		mt := config.NewMachineType()
		mt.SetMachineType(v.Config.Type)

		if err := upsert(ctx, st, mt); err != nil {
			return err
		}

		nn := k8s.NewNodename(k8s.NamespaceName, k8s.NodenameID)
		nn.TypedSpec().Nodename = v.Hostname
		nn.TypedSpec().HostnameVersion = "1"

		if err := upsert(ctx, st, nn); err != nil {
			return err
		}
	} else {
		for _, md := range []resource.Metadata{
			resource.NewMetadata(config.NamespaceName, config.MachineConfigType, config.ActiveID, resource.VersionUndefined),
			resource.NewMetadata(config.NamespaceName, config.MachineTypeType, config.MachineTypeID, resource.VersionUndefined),
			resource.NewMetadata(k8s.NamespaceName, k8s.NodenameType, k8s.NodenameID, resource.VersionUndefined),
		} {
			if err := st.Destroy(ctx, md); err != nil && !state.IsNotFoundError(err) {
				return err
			}
		}
	}

	etcdMD := resource.NewMetadata(etcd.NamespaceName, etcd.MemberType, etcd.LocalMemberID, resource.VersionUndefined)

	if v.EtcdRunning {
		m := etcd.NewMember(etcd.NamespaceName, etcd.LocalMemberID)
		m.TypedSpec().MemberID = fmt.Sprintf("%016x", v.EtcdMemberID)

		if err := upsert(ctx, st, m); err != nil {
			return err
		}
	} else if err := st.Destroy(ctx, etcdMD); err != nil && !state.IsNotFoundError(err) {
		return err
	}

	keep = map[string]bool{}

	for _, svc := range serviceSet(v) {
		keep[svc.id] = true
		s := v1alpha1.NewService(svc.id)
		s.TypedSpec().Running = svc.running
		s.TypedSpec().Healthy = svc.healthy
		s.TypedSpec().Unknown = !svc.running

		if err := upsert(ctx, st, s); err != nil {
			return err
		}
	}

	if err := prune(ctx, st, resource.NewMetadata(v1alpha1.NamespaceName, v1alpha1.ServiceType, "", resource.VersionUndefined), keep); err != nil {
		return err
	}

	if err := syncExtensions(ctx, st, v); err != nil {
		return err
	}

	keep = map[string]bool{}

	for _, m := range v.Members {
		keep[m.ID] = true
		r := cluster.NewMember(cluster.NamespaceName, m.ID)
		spec := r.TypedSpec()
		spec.NodeID = m.ID
		spec.Hostname = m.Hostname
		spec.MachineType = m.MachineType
		spec.OperatingSystem = fmt.Sprintf("Talos (%s)", m.Version)

		if addr, err := netip.ParseAddr(m.Address); err == nil {
			spec.Addresses = []netip.Addr{addr}
		}

		if m.MachineType.IsControlPlane() {
			spec.ControlPlane = &cluster.ControlPlane{APIServerPort: 6443}
		}

		if err := upsert(ctx, st, r); err != nil {
			return err
		}
	}

	return prune(ctx, st, resource.NewMetadata(cluster.NamespaceName, cluster.MemberType, "", resource.VersionUndefined), keep)
}

// accessFilter mirrors Talos' API access policy on COSI: read-only, known types and
// namespaces only, sensitive types (the machine config) for os:admin only.
func accessFilter(st state.State) state.FilteringRule {
	return func(ctx context.Context, access state.Access) error {
		if !access.Verb.Readonly() {
			return status.Error(codes.PermissionDenied, "write access is not allowed")
		}

		rd, err := safe.StateGet[*meta.ResourceDefinition](ctx, st, resource.NewMetadata(meta.NamespaceName, meta.ResourceDefinitionType, strings.ToLower(access.ResourceType), resource.VersionUndefined))
		if err != nil {
			if state.IsNotFoundError(err) {
				return status.Error(codes.PermissionDenied, fmt.Sprintf("resource type %q is not supported", access.ResourceType))
			}

			return err
		}

		if rd.TypedSpec().Sensitivity == meta.Sensitive && !rolesFrom(ctx).Includes(role.Admin) {
			return errNotAuthorized
		}

		if _, err = safe.StateGet[*meta.Namespace](ctx, st, resource.NewMetadata(meta.NamespaceName, meta.NamespaceType, access.ResourceNamespace, resource.VersionUndefined)); err != nil {
			if state.IsNotFoundError(err) {
				return status.Error(codes.PermissionDenied, fmt.Sprintf("namespace %q is not supported", access.ResourceNamespace))
			}

			return err
		}

		return nil
	}
}

// syncExtensions: one ExtensionStatus per system extension of the running image, plus the
// "schematic" extension the Image Factory injects (version = the schematic ID), and the
// ImageFactorySchematic resource machined derives from it.
func syncExtensions(ctx context.Context, st state.State, v nodeView) error {
	keep := map[string]bool{}
	up := v.Stage == runtime.MachineStageRunning || v.Stage == runtime.MachineStageMaintenance

	var layers []extensions.Layer

	if up {
		for _, e := range v.Extensions {
			name := e[strings.LastIndex(e, "/")+1:]
			layers = append(layers, extensions.Layer{
				Image:    name + ".sqsh",
				Metadata: extensions.Metadata{Name: name, Version: "sim", Author: "Sidero Labs", Description: "simulated system extension " + e},
			})
		}

		if v.Schematic != "" {
			layers = append(layers, extensions.Layer{
				Image:    "schematic.sqsh",
				Metadata: extensions.Metadata{Name: "schematic", Version: v.Schematic, Author: "Image Factory (https://factory.talos.dev)", Description: "Virtual extension which specifies the schematic ID of the image."},
			})
		}
	}

	for i, l := range layers {
		id := strconv.Itoa(i)
		keep[id] = true
		r := runtime.NewExtensionStatus(runtime.NamespaceName, id)
		*r.TypedSpec() = l

		if err := upsert(ctx, st, r); err != nil {
			return err
		}
	}

	if err := prune(ctx, st, resource.NewMetadata(runtime.NamespaceName, runtime.ExtensionStatusType, "", resource.VersionUndefined), keep); err != nil {
		return err
	}

	sm := resource.NewMetadata(runtime.NamespaceName, runtime.ImageFactorySchematicType, runtime.ImageFactorySchematicID, resource.VersionUndefined)

	if !up || v.Schematic == "" {
		if err := st.Destroy(ctx, sm); err != nil && !state.IsNotFoundError(err) {
			return err
		}

		return nil
	}

	r := runtime.NewImageFactorySchematic(runtime.NamespaceName, runtime.ImageFactorySchematicID)
	r.TypedSpec().SchematicID = v.Schematic
	r.TypedSpec().Flavor = "Image Factory"
	r.TypedSpec().APIURL = "https://factory.talos.dev"

	return upsert(ctx, st, r)
}
