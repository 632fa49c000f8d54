// SPDX-License-Identifier: GPL-3.0-or-later

// talos-sim serves the Talos API of simulated nodes so that the unmodified talosctl
// drives them; see lab/talos_sim/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"homecluster.local/lab/talos_sim/sim"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	var (
		nodes        multiFlag
		nodesFile    = flag.String("nodes-file", "", "JSON list of nodes: [{\"name\",\"address\",\"disks\":[{\"id\",\"size_gb\"}]}]")
		count        = flag.Int("count", 0, "simulate N nodes node1..nodeN at 127.0.10.11.. (when no --node/--nodes-file)")
		stateDir     = flag.String("state-dir", "", "state directory (required)")
		admin        = flag.String("admin", "127.0.0.1:50080", "admin HTTP API address")
		version      = flag.String("talos-version", "v1.14.1", "Talos version the nodes report")
		port         = flag.Int("port", 50000, "Talos API port on every node address")
		bootDelay    = flag.Duration("boot-delay", 500*time.Millisecond, "power on / reboot until the API answers")
		installDelay = flag.Duration("install-delay", time.Second, "maintenance apply until the configured node answers")
		kubeScript   = flag.String("kube", "", "path to lab/kube (empty: no Kubernetes control plane)")
		kubeDir      = flag.String("kube-dir", "", "lab/kube state directory (default STATE/kube)")
		etcdctl      = flag.String("etcdctl", "", "etcdctl for etcd snapshots (default: from PATH)")
		powerCommand = flag.String("power-command", "", "command run with NAME on|off appended when a node goes down or has booted")
	)

	flag.Var(&nodes, "node", "NAME=ADDRESS[,disks=sda:32+sdb:100][,off], repeatable")
	flag.Parse()

	if *stateDir == "" {
		fmt.Fprintln(os.Stderr, "--state-dir is required")
		os.Exit(2)
	}

	var defs []sim.NodeDef

	if *nodesFile != "" {
		d, err := sim.LoadNodesFile(*nodesFile)
		if err != nil {
			log.Fatal(err)
		}

		defs = append(defs, d...)
	}

	for _, v := range nodes {
		d, err := sim.ParseNodeFlag(v)
		if err != nil {
			log.Fatal(err)
		}

		defs = append(defs, d)
	}

	if len(defs) == 0 {
		for i := range *count {
			defs = append(defs, sim.NodeDef{Name: fmt.Sprintf("node%d", i+1), Address: fmt.Sprintf("127.0.10.%d", 11+i)})
		}
	}

	s, err := sim.New(sim.Options{
		StateDir: *stateDir, Nodes: defs, Version: *version, Port: *port,
		BootDelay: *bootDelay, InstallDelay: *installDelay,
		KubeScript: *kubeScript, KubeDir: *kubeDir, EtcdctlPath: *etcdctl, PowerCommand: *powerCommand,
	})
	if err != nil {
		log.Fatal(err)
	}

	adminLis, err := net.Listen("tcp", *admin)
	if err != nil {
		log.Fatalf("admin API: %v", err)
	}

	if err := s.Start(); err != nil {
		log.Fatal(err)
	}

	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}

	go func() {
		if err := srv.Serve(adminLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Fatalf("admin API: %v", err)
		}
	}()

	log.Printf("talos-sim: %d nodes, admin API on http://%s", len(defs), adminLis.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	<-ctx.Done()

	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	_ = srv.Shutdown(shutdownCtx) //nolint:errcheck

	s.Stop()
}
