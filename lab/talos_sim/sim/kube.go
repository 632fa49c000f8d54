// SPDX-License-Identifier: GPL-3.0-or-later

package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// kubeManager drives the lab's real control plane (lab/kube) for the bootstrapped cluster.
type kubeManager struct {
	s *Sim

	mu       sync.Mutex
	starting bool
	retries  int // guarded by s.mu

	etcdOnce  sync.Once
	etcdQueue chan func() // lab/kube_etcd.py operations, one at a time (recover.go)
}

func newKubeManager(s *Sim) *kubeManager { return &kubeManager{s: s} }

func (k *kubeManager) enabled() bool { return k.s.opts.KubeScript != "" }

func (k *kubeManager) dir() string {
	if k.s.opts.KubeDir != "" {
		return k.s.opts.KubeDir
	}

	return filepath.Join(k.s.opts.StateDir, "kube")
}

func (k *kubeManager) run(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()

	cmd := exec.CommandContext(ctx, k.s.opts.KubeScript, args...)
	out, err := cmd.CombinedOutput()

	return string(out), err
}

func nodeRole(n *Node) string {
	if n.cfg.Type.IsControlPlane() {
		return "controlplane"
	}

	return "worker"
}

// ensureUp starts `lab/kube up` in the background for the bootstrapped cluster (s.mu held).
func (k *kubeManager) ensureUp() {
	cl := &k.s.sf.Cluster
	if !cl.Bootstrapped {
		return
	}

	if !k.enabled() {
		cl.KubeUp = true

		for _, n := range k.s.nodes {
			if n.configuredLocked() && n.cfg.ClusterID == cl.ClusterID {
				n.rec.KubeNode = true
			}
		}

		return
	}

	k.mu.Lock()
	if k.starting {
		k.mu.Unlock()

		return
	}

	k.starting = true
	k.mu.Unlock()

	var lead *Node

	for _, n := range k.s.nodes {
		if n.configuredLocked() && n.cfg.ClusterID == cl.ClusterID && n.cfg.Type.IsControlPlane() {
			if lead == nil || n.addr() == cl.BootstrapNode {
				lead = n
			}
		}
	}

	if lead == nil {
		k.mu.Lock()
		k.starting = false
		k.mu.Unlock()

		cl.KubeError = "no configured control plane to take the cluster CA from"

		return
	}

	args, err := k.upArgs(lead)
	if err != nil {
		k.mu.Lock()
		k.starting = false
		k.mu.Unlock()

		cl.KubeError = err.Error()
		k.s.log.Printf("lab/kube up: %v", err)

		return
	}

	go func() {
		started := time.Now()
		k.s.log.Printf("starting the control plane: %s %s", k.s.opts.KubeScript, strings.Join(args, " "))

		out, err := k.run(k.s.ctx, args...)

		k.mu.Lock()
		k.starting = false
		k.mu.Unlock()

		k.s.mu.Lock()
		defer k.s.mu.Unlock()

		if err != nil {
			cl.KubeError = fmt.Sprintf("lab/kube up: %v: %s", err, strings.TrimSpace(out))
			k.s.log.Print(cl.KubeError)
			_ = k.s.saveLocked()

			// try again later, as kubelet and etcd would keep retrying on a real node
			k.retries++
			if k.retries <= 5 && k.s.ctx.Err() == nil {
				time.AfterFunc(time.Duration(k.retries)*10*time.Second, func() {
					k.s.mu.Lock()
					defer k.s.mu.Unlock()

					if !k.s.stopped && !cl.KubeUp {
						k.ensureUp()
					}
				})
			}

			return
		}

		k.retries = 0

		k.s.log.Printf("control plane up in %s", time.Since(started).Round(time.Millisecond))

		cl.KubeUp = true
		cl.KubeError = ""
		cl.KubeDir = k.dir()

		for _, n := range k.s.nodes {
			if n.configuredLocked() && n.cfg.ClusterID == cl.ClusterID && n.rec.PowerOn {
				if strings.Contains(" "+strings.Join(args, " ")+" ", " "+n.hostnameLocked()+"=") {
					n.rec.KubeNode = true
				} else if !n.rec.KubeNode {
					k.addNode(n)
				}
			}
		}

		_ = k.s.saveLocked()
	}()
}

func writeSecret(path string, data []byte) error {
	return os.WriteFile(path, data, 0o600)
}

func (k *kubeManager) upArgs(lead *Node) ([]string, error) {
	cfg := lead.cfg
	if cfg.K8sCA == nil || cfg.K8sCA.Key == nil {
		return nil, fmt.Errorf("%s: the machine config has no cluster.ca key", lead.def.Name)
	}

	if cfg.Endpoint == nil {
		return nil, fmt.Errorf("%s: the machine config has no cluster.controlPlane.endpoint", lead.def.Name)
	}

	host, port, err := net.SplitHostPort(cfg.Endpoint.Host)
	if err != nil {
		host, port = cfg.Endpoint.Host, "6443"
	}

	inputs := filepath.Join(k.s.opts.StateDir, "cluster-pki")
	if err := os.MkdirAll(inputs, 0o700); err != nil {
		return nil, err
	}

	caCert, caKey, saKey := filepath.Join(inputs, "ca.crt"), filepath.Join(inputs, "ca.key"), filepath.Join(inputs, "sa.key")

	if err := os.WriteFile(caCert, cfg.K8sCA.CertPEM, 0o600); err != nil {
		return nil, err
	}

	if err := writeSecret(caKey, cfg.K8sCA.KeyPEM); err != nil {
		return nil, err
	}

	args := []string{"up", "--dir", k.dir(), "--address", host, "--port", port, "--ca-cert", caCert, "--ca-key", caKey}

	if len(cfg.SAKeyPEM) > 0 {
		if err := writeSecret(saKey, cfg.SAKeyPEM); err != nil {
			return nil, err
		}

		args = append(args, "--sa-key", saKey)
	}

	var nodes []string

	for _, n := range k.s.nodes {
		// nodes with labels of their own join through `node add` (which takes labels) after up
		if n.configuredLocked() && n.cfg.ClusterID == cfg.ClusterID && n.rec.PowerOn && len(extraLabels(n.cfg)) == 0 {
			nodes = append(nodes, fmt.Sprintf("%s=%s:%s", n.hostnameLocked(), n.addr(), nodeRole(n)))
		}
	}

	sort.Strings(nodes)

	for _, n := range nodes {
		args = append(args, "--node", n)
	}

	return args, nil
}

// addNode registers a node that joined after the control plane came up (s.mu held).
func (k *kubeManager) addNode(n *Node) {
	cl := &k.s.sf.Cluster
	if !cl.KubeUp {
		return // picked up when `lab/kube up` finishes
	}

	if !k.enabled() {
		n.rec.KubeNode = true

		return
	}

	args := []string{"node", "add", "--dir", k.dir(), "--name", n.hostnameLocked(), "--ip", n.addr(), "--role", nodeRole(n)}

	for _, l := range extraLabels(n.cfg) {
		args = append(args, "--label", l)
	}

	n.rec.KubeNode = true

	go func() {
		if out, err := k.run(k.s.ctx, args...); err != nil {
			k.s.log.Printf("lab/kube node add %s: %v: %s", n.def.Name, err, strings.TrimSpace(out))

			k.s.mu.Lock()
			n.rec.KubeNode = false
			k.s.mu.Unlock()
		}
	}()
}

// stopNode: a reset node's kubelet is gone (s.mu held). Like Talos, the Node object stays (it goes
// NotReady once kwok stops its heartbeats); deleting it is the operator's step (`kubectl delete node`).
func (k *kubeManager) stopNode(n *Node) {
	n.rec.KubeNode = false

	if !k.enabled() || !k.s.sf.Cluster.KubeUp {
		return
	}

	name := n.hostnameLocked()

	go func() {
		if out, err := k.run(k.s.ctx, "node", "stop", "--dir", k.dir(), "--name", name); err != nil {
			k.s.log.Printf("lab/kube node stop %s: %v: %s", name, err, strings.TrimSpace(out))
		}
	}()
}

// snapshot saves an etcd snapshot of the lab's control plane to a temporary file.
func (k *kubeManager) snapshot(ctx context.Context) (string, func(), error) {
	etcdctl := k.s.opts.EtcdctlPath
	if etcdctl == "" {
		var err error

		etcdctl, err = exec.LookPath("etcdctl")
		if err != nil {
			return "", nil, fmt.Errorf("etcdctl not found: %w", err)
		}
	}

	data, err := os.ReadFile(filepath.Join(k.dir(), "config.json"))
	if err != nil {
		return "", nil, fmt.Errorf("the control plane is not running: %w", err)
	}

	var cfg struct {
		Address  string `json:"address"`
		EtcdPort int    `json:"etcd_port"`
	}

	if err := json.Unmarshal(data, &cfg); err != nil {
		return "", nil, err
	}

	tmp, err := os.MkdirTemp("", "talos-sim-snapshot-")
	if err != nil {
		return "", nil, err
	}

	cleanup := func() { os.RemoveAll(tmp) } //nolint:errcheck
	path := filepath.Join(tmp, "db.snapshot")

	cmd := exec.CommandContext(ctx, etcdctl, "--endpoints", fmt.Sprintf("http://%s:%d", cfg.Address, cfg.EtcdPort), "snapshot", "save", path)
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")

	if out, err := cmd.CombinedOutput(); err != nil {
		cleanup()

		return "", nil, fmt.Errorf("etcdctl snapshot save: %v: %s", err, strings.TrimSpace(string(out)))
	}

	return path, cleanup, nil
}

// extraLabels: the machine config's node labels beyond the role labels lab/kube sets itself.
func extraLabels(cfg *parsedConfig) []string {
	var out []string

	for key, val := range cfg.NodeLabels {
		if strings.HasPrefix(key, "node-role.kubernetes.io/") || key == "node.kubernetes.io/exclude-from-external-load-balancers" {
			continue
		}

		out = append(out, key+"="+val)
	}

	sort.Strings(out)

	return out
}

// relabel applies changed node labels of a running node (s.mu held), like Talos' node
// labels controller; labels removed from the config are removed from the node.
func (k *kubeManager) relabel(n *Node, old *parsedConfig) {
	if !k.enabled() || !k.s.sf.Cluster.KubeUp || !n.rec.KubeNode {
		return
	}

	want := map[string]string{}
	for _, l := range extraLabels(n.cfg) {
		key, val, _ := strings.Cut(l, "=")
		want[key] = val
	}

	var args []string

	if old != nil {
		for _, l := range extraLabels(old) {
			key, _, _ := strings.Cut(l, "=")
			if _, ok := want[key]; !ok {
				args = append(args, key+"-")
			}
		}
	}

	for _, l := range extraLabels(n.cfg) {
		args = append(args, l)
	}

	if len(args) == 0 {
		return
	}

	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		kubectl = filepath.Join(filepath.Dir(k.s.opts.EtcdctlPath), "kubectl")
	}

	cmd := append([]string{"--kubeconfig", filepath.Join(k.dir(), "admin.kubeconfig"), "label", "node", n.hostnameLocked(), "--overwrite"}, args...)

	go func() {
		ctx, cancel := context.WithTimeout(k.s.ctx, time.Minute)
		defer cancel()

		if out, err := exec.CommandContext(ctx, kubectl, cmd...).CombinedOutput(); err != nil {
			k.s.log.Printf("kubectl label node %s: %v: %s", n.def.Name, err, strings.TrimSpace(string(out)))
		}
	}()
}
