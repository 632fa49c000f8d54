// SPDX-License-Identifier: GPL-3.0-or-later

package sim

import (
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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

// imageServer answers image pulls (talosctl upgrade pulls the installer image first).
type imageServer struct {
	machineapi.UnimplementedImageServiceServer
}

func (imageServer) Pull(in *machineapi.ImageServicePullRequest, srv grpc.ServerStreamingServer[machineapi.ImageServicePullResponse]) error {
	ref := in.GetImageRef()
	if imageTag(ref) == "" && !strings.Contains(ref, "@sha256:") {
		return status.Errorf(codes.InvalidArgument, "failed to pull image %q: no tag or digest", ref)
	}

	return srv.Send(&machineapi.ImageServicePullResponse{Response: &machineapi.ImageServicePullResponse_Name{Name: ref}})
}
