// SPDX-License-Identifier: GPL-3.0-or-later

package sim

import (
	"fmt"

	"google.golang.org/grpc"

	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
)

// lifecycleServer is the LifecycleService talosctl upgrade uses from Talos 1.13 on.
type lifecycleServer struct {
	machineapi.UnimplementedLifecycleServiceServer

	s *Sim
}

func progressMsg(msg string) *machineapi.LifecycleServiceUpgradeResponse {
	return &machineapi.LifecycleServiceUpgradeResponse{Progress: &machineapi.LifecycleServiceInstallProgress{
		Response: &machineapi.LifecycleServiceInstallProgress_Message{Message: msg},
	}}
}

// Upgrade "installs" the image (the node then reports the image tag as its version); the
// client reboots the node afterwards.
func (l *lifecycleServer) Upgrade(in *machineapi.LifecycleServiceUpgradeRequest, srv grpc.ServerStreamingServer[machineapi.LifecycleServiceUpgradeResponse]) error {
	n := targetNode(srv.Context())
	image := in.GetSource().GetImageName()

	if err := srv.Send(progressMsg(fmt.Sprintf("pulling installer image %s", image))); err != nil {
		return err
	}

	if err := l.s.startUpgrade(n, image, true, newID()); err != nil {
		return err
	}

	if err := srv.Send(progressMsg("installation of " + image + " complete")); err != nil {
		return err
	}

	return srv.Send(&machineapi.LifecycleServiceUpgradeResponse{Progress: &machineapi.LifecycleServiceInstallProgress{
		Response: &machineapi.LifecycleServiceInstallProgress_ExitCode{ExitCode: 0},
	}})
}
