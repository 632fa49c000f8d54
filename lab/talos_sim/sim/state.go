// SPDX-License-Identifier: GPL-3.0-or-later

package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DiskDef describes one simulated block device of a node.
type DiskDef struct {
	ID         string `json:"id"`
	SizeGB     uint64 `json:"size_gb"`
	Model      string `json:"model,omitempty"`
	Serial     string `json:"serial,omitempty"`
	Transport  string `json:"transport,omitempty"`
	Rotational bool   `json:"rotational,omitempty"`
}

// NodeDef is a node as configured on the command line or in the nodes file.
type NodeDef struct {
	Name    string    `json:"name"`
	Address string    `json:"address"`
	Disks   []DiskDef `json:"disks,omitempty"`
	// PoweredOn is the initial power state of a node that has no saved state yet.
	PoweredOn *bool `json:"powered_on,omitempty"`
	// Schematic and Extensions: the Image Factory schematic the node's boot media was built
	// from (default: the empty schematic, no extensions).
	Schematic  string   `json:"schematic,omitempty"`
	Extensions []string `json:"extensions,omitempty"`
}

// nodeRecord is what survives a restart for one node.
type nodeRecord struct {
	Name            string    `json:"name"`
	Address         string    `json:"address"`
	PowerOn         bool      `json:"power_on"`
	Installed       bool      `json:"installed"`
	Version         string    `json:"version"`
	BootID          string    `json:"boot_id"`
	ActiveConfig    string    `json:"active_config,omitempty"`
	PersistedConfig string    `json:"persisted_config,omitempty"`
	EtcdMember      bool      `json:"etcd_member"`
	EtcdMemberID    uint64    `json:"etcd_member_id,omitempty"`
	KubeNode        bool      `json:"kube_node"`
	Disks           []DiskDef `json:"disks,omitempty"`
	// the running system's schematic and extensions; an upgrade installs an image that
	// becomes the running system at the next boot (Pending*)
	Schematic  string     `json:"schematic,omitempty"`
	Extensions []string   `json:"extensions,omitempty"`
	Pending    *installed `json:"pending,omitempty"`
	Upgrades   int        `json:"upgrades,omitempty"`
}

// installed is an installer image written to the system disk, active from the next boot.
type installed struct {
	Image      string   `json:"image"`
	Version    string   `json:"version"`
	Schematic  string   `json:"schematic,omitempty"`
	Extensions []string `json:"extensions,omitempty"`
}

// clusterRecord is the cluster-wide state (one cluster per simulator).
type clusterRecord struct {
	Bootstrapped  bool   `json:"bootstrapped"`
	BootstrapNode string `json:"bootstrap_node,omitempty"`
	ClusterID     string `json:"cluster_id,omitempty"`
	KubeDir       string `json:"kube_dir,omitempty"`
	KubeUp        bool   `json:"kube_up"`
	KubeError     string `json:"kube_error,omitempty"`
	// Schematics: what the simulated Image Factory knows (schematic ID -> extensions)
	Schematics map[string][]string `json:"schematics,omitempty"`
	Leader     uint64              `json:"etcd_leader,omitempty"`
}

type stateFile struct {
	Nodes   map[string]*nodeRecord `json:"nodes"`
	Cluster clusterRecord          `json:"cluster"`
}

func loadState(dir string) (*stateFile, error) {
	sf := &stateFile{Nodes: map[string]*nodeRecord{}}

	data, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return sf, nil
		}

		return nil, err
	}

	if err := json.Unmarshal(data, sf); err != nil {
		return nil, fmt.Errorf("state file %s: %w", filepath.Join(dir, "state.json"), err)
	}

	if sf.Nodes == nil {
		sf.Nodes = map[string]*nodeRecord{}
	}

	return sf, nil
}

func saveState(dir string, sf *stateFile) error {
	data, err := json.MarshalIndent(sf, "", "  ")
	if err != nil {
		return err
	}

	tmp := filepath.Join(dir, ".state.json.tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}

	return os.Rename(tmp, filepath.Join(dir, "state.json"))
}

// LoadNodesFile reads a JSON list of NodeDef.
func LoadNodesFile(path string) ([]NodeDef, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}

	var defs []NodeDef
	if err := json.Unmarshal(data, &defs); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}

	return defs, nil
}

// ParseNodeFlag parses NAME=ADDRESS[,disks=sda:20+sdb:100][,off][,schematic=ID,extensions=a/b+c/d].
func ParseNodeFlag(v string) (NodeDef, error) {
	name, rest, ok := strings.Cut(v, "=")
	if !ok || name == "" || rest == "" {
		return NodeDef{}, fmt.Errorf("node %q: want NAME=ADDRESS[,disks=sda:20+sdb:100]", v)
	}

	parts := strings.Split(rest, ",")
	def := NodeDef{Name: name, Address: parts[0]}

	for _, p := range parts[1:] {
		k, val, _ := strings.Cut(p, "=")

		switch k {
		case "disks":
			for _, d := range strings.Split(val, "+") {
				id, size, _ := strings.Cut(d, ":")

				var gb uint64 = 20
				if size != "" {
					if _, err := fmt.Sscanf(size, "%d", &gb); err != nil {
						return NodeDef{}, fmt.Errorf("node %q: disk size %q: %w", v, size, err)
					}
				}

				def.Disks = append(def.Disks, DiskDef{ID: id, SizeGB: gb})
			}
		case "off":
			off := false
			def.PoweredOn = &off
		case "schematic":
			def.Schematic = val
		case "extensions":
			def.Extensions = strings.Split(val, "+")
		default:
			return NodeDef{}, fmt.Errorf("node %q: unknown option %q", v, k)
		}
	}

	return def, nil
}

// DefaultDisks is the disk set of a node that names none: an install disk and a data disk.
func DefaultDisks() []DiskDef {
	return []DiskDef{
		{ID: "sda", SizeGB: 32},
		{ID: "sdb", SizeGB: 100},
	}
}
