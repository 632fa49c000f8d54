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

// Upgrade installs the image on the system disk, like Talos 1.13+'s LifecycleService: no etcd
// health or quorum check on the node and no reboot (the client drains and reboots). The image
// (its version, schematic and extensions) runs from the next boot.
func (l *lifecycleServer) Upgrade(in *machineapi.LifecycleServiceUpgradeRequest, srv grpc.ServerStreamingServer[machineapi.LifecycleServiceUpgradeResponse]) error {
	n := targetNode(srv.Context())
	image := in.GetSource().GetImageName()

	if image == "" {
		return status.Error(codes.InvalidArgument, "installer image name is required")
	}

	if !n.upgradeMu.TryLock() {
		return status.Error(codes.FailedPrecondition, "another installation/upgrade is already in progress")
	}
	defer n.upgradeMu.Unlock()

	l.s.mu.Lock()
	installedOK := n.configuredLocked() && n.rec.Installed
	l.s.mu.Unlock()

	if !installedOK {
		return status.Error(codes.FailedPrecondition, "machine is not installed")
	}

	if err := srv.Send(progressMsg(fmt.Sprintf("pulling installer image %s", image))); err != nil {
		return err
	}

	l.s.mu.Lock()
	err := l.s.installLocked(n, image)
	l.s.mu.Unlock()

	if err != nil {
		return status.Errorf(codes.Internal, "upgrade failed: %v", err)
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

	s *Sim
}

func (i imageServer) Pull(in *machineapi.ImageServicePullRequest, srv grpc.ServerStreamingServer[machineapi.ImageServicePullResponse]) error {
	ref := in.GetImageRef()
	if imageTag(ref) == "" && !strings.Contains(ref, "@sha256:") {
		return status.Errorf(codes.InvalidArgument, "failed to pull image %q: no tag or digest", ref)
	}

	i.s.mu.Lock()
	_, _, err := i.s.imageContentsLocked(ref)
	i.s.mu.Unlock()

	if err != nil {
		return err
	}

	return srv.Send(&machineapi.ImageServicePullResponse{Response: &machineapi.ImageServicePullResponse_Name{Name: ref}})
}
