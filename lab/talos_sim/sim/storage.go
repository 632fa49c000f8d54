// SPDX-License-Identifier: GPL-3.0-or-later

package sim

import (
	"context"

	"google.golang.org/protobuf/types/known/emptypb"

	storageapi "github.com/siderolabs/talos/pkg/machinery/api/storage"
)

// storageServer is the legacy StorageService (talosctl reset's post-check lists disks
// through it in maintenance mode).
type storageServer struct {
	storageapi.UnimplementedStorageServiceServer

	s *Sim
}

func (st *storageServer) Disks(ctx context.Context, _ *emptypb.Empty) (*storageapi.DisksResponse, error) {
	n := targetNode(ctx)

	st.s.mu.Lock()
	defs := n.def.Disks
	st.s.mu.Unlock()

	out := &storageapi.Disks{}

	for _, d := range defs {
		r := diskResource(d).TypedSpec()
		typ := storageapi.Disk_SSD

		if d.Rotational {
			typ = storageapi.Disk_HDD
		}

		out.Disks = append(out.Disks, &storageapi.Disk{
			Size: r.Size, Model: r.Model, DeviceName: r.DevPath, Serial: r.Serial, Type: typ, BusPath: r.BusPath,
		})
	}

	return &storageapi.DisksResponse{Messages: []*storageapi.Disks{out}}, nil
}
