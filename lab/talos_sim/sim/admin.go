// SPDX-License-Identifier: GPL-3.0-or-later

package sim

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// NodeStatus is a node as GET /nodes shows it.
type NodeStatus struct {
	Name         string         `json:"name"`
	Address      string         `json:"address"`
	Power        string         `json:"power"`
	Phase        string         `json:"phase"` // off, booting, maintenance, running, unreachable
	Hostname     string         `json:"hostname"`
	MachineType  string         `json:"machine_type,omitempty"`
	ClusterName  string         `json:"cluster_name,omitempty"`
	Version      string         `json:"version"`
	Installed    bool           `json:"installed"`
	EtcdMember   bool           `json:"etcd_member"`
	KubeNode     bool           `json:"kube_node"`
	StagedConfig bool           `json:"staged_config"`
	Disks        []DiskDef      `json:"disks"`
	Calls        map[string]int `json:"calls"`
	Schematic    string         `json:"schematic"`
	Extensions   []string       `json:"extensions"`
	// PendingImage: an installer image written by an upgrade, running from the next boot
	PendingImage string `json:"pending_image,omitempty"`
	Upgrades     int    `json:"upgrades"`
	EtcdUp       bool   `json:"etcd_up"`
}

func (n *Node) statusLocked() NodeStatus {
	st := NodeStatus{
		Name: n.def.Name, Address: n.addr(), Power: "off", Phase: "off", Hostname: n.hostnameLocked(),
		Version: n.rec.Version, Installed: n.rec.Installed, EtcdMember: n.rec.EtcdMember, KubeNode: n.rec.KubeNode,
		StagedConfig: n.rec.PersistedConfig != "" && n.rec.PersistedConfig != n.rec.ActiveConfig,
		Disks:        n.def.Disks,
		Calls:        map[string]int{},
		Schematic:    n.rec.Schematic, Extensions: append([]string{}, n.rec.Extensions...),
		Upgrades: n.rec.Upgrades, EtcdUp: n.etcdUpLocked(),
	}

	if n.rec.Pending != nil {
		st.PendingImage = n.rec.Pending.Image
	}

	for k, v := range n.calls {
		st.Calls[k] = v
	}

	if n.configuredLocked() {
		st.MachineType = n.cfg.Type.String()
		st.ClusterName = n.cfg.ClusterName
	}

	if n.rec.PowerOn {
		st.Power = "on"

		switch {
		case n.booting:
			st.Phase = "booting"
		case n.sim.faults.unreachable(n.addr()):
			st.Phase = "unreachable"
		case n.configuredLocked():
			st.Phase = "running"
		default:
			st.Phase = "maintenance"
		}
	}

	return st
}

// Handler is the admin HTTP API.
func (s *Sim) Handler() http.Handler {
	mux := http.NewServeMux()

	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})

	mux.HandleFunc("GET /nodes", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()

		out := struct {
			Nodes   []NodeStatus  `json:"nodes"`
			Cluster clusterRecord `json:"cluster"`
		}{Cluster: s.sf.Cluster}

		for _, n := range s.nodes {
			out.Nodes = append(out.Nodes, n.statusLocked())
		}

		writeJSON(w, http.StatusOK, out)
	})

	mux.HandleFunc("POST /power", s.handlePower)

	mux.HandleFunc("GET /etcd", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()

		writeJSON(w, http.StatusOK, s.etcdReportLocked())
	})

	mux.HandleFunc("POST /etcd/reset", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()

		s.resetEtcdStatsLocked()
		writeJSON(w, http.StatusOK, s.etcdReportLocked())
	})

	mux.HandleFunc("POST /etcd/alarms", s.handleAlarm)

	mux.HandleFunc("DELETE /etcd/alarms", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()

		s.alarms = map[uint64]string{}
		writeJSON(w, http.StatusOK, s.etcdReportLocked())
	})

	mux.HandleFunc("GET /schematics", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()

		writeJSON(w, http.StatusOK, s.schematicsLocked())
	})

	mux.HandleFunc("POST /schematics", s.handleSchematic)

	mux.HandleFunc("GET /faults", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"faults": s.faults.list()})
	})

	mux.HandleFunc("POST /faults", s.handleAddFault)

	mux.HandleFunc("DELETE /faults", func(w http.ResponseWriter, _ *http.Request) {
		cleared := s.faults.clear()

		s.mu.Lock()
		for _, n := range s.nodes {
			if n.rec.PowerOn && !n.booting && n.lis == nil {
				if err := n.openListenerLocked(); err != nil {
					s.log.Printf("%s: reopening listener: %v", n.def.Name, err)
				}
			}
		}
		s.mu.Unlock()

		writeJSON(w, http.StatusOK, map[string]any{"cleared": len(cleared)})
	})

	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) //nolint:errcheck
}

func httpError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, map[string]string{"error": fmt.Sprintf(format, args...)})
}

type powerRequest struct {
	Address string    `json:"address"`
	Name    string    `json:"name"`
	State   string    `json:"state"`
	Disks   []DiskDef `json:"disks,omitempty"` // for a node the simulator does not know yet
	// boot media of a node the simulator does not know yet
	Schematic  string   `json:"schematic,omitempty"`
	Extensions []string `json:"extensions,omitempty"`
}

func (s *Sim) handlePower(w http.ResponseWriter, r *http.Request) {
	var req powerRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "bad JSON: %v", err)

		return
	}

	if req.State != "on" && req.State != "off" {
		httpError(w, http.StatusBadRequest, "state must be \"on\" or \"off\", got %q", req.State)

		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()

	var n *Node
	if req.Address != "" {
		n = s.byAddr[req.Address]
	} else if req.Name != "" {
		n = s.nodeLocked(req.Name)
	}

	if n == nil {
		ip := net.ParseIP(req.Address)
		if ip == nil || !ip.IsLoopback() || req.Name == "" {
			httpError(w, http.StatusNotFound, "no node with address %q or name %q (new nodes need a loopback address and a name)", req.Address, req.Name)

			return
		}

		off := false
		if err := s.addNodeLocked(NodeDef{Name: req.Name, Address: req.Address, PoweredOn: &off, Disks: req.Disks, Schematic: req.Schematic, Extensions: req.Extensions}); err != nil {
			httpError(w, http.StatusBadRequest, "%v", err)

			return
		}

		n = s.byAddr[req.Address]
		s.sf.Nodes[req.Address].PowerOn = false
		s.log.Printf("%s: new node at %s (power hook)", req.Name, req.Address)
	}

	changed := false

	switch {
	case req.State == "on" && !n.rec.PowerOn:
		n.rec.PowerOn = true
		_ = n.bootLocked(s.opts.BootDelay) //nolint:errcheck
		changed = true
	case req.State == "off" && n.rec.PowerOn:
		n.powerOffLocked()
		s.syncMembersLocked()
		changed = true
	}

	_ = s.saveLocked()

	s.log.Printf("%s: power %s (changed=%v)", n.def.Name, req.State, changed)
	writeJSON(w, http.StatusOK, map[string]any{"changed": changed, "node": n.statusLocked()})
}

func (s *Sim) handleAddFault(w http.ResponseWriter, r *http.Request) {
	var f Fault
	if err := json.NewDecoder(r.Body).Decode(&f); err != nil {
		httpError(w, http.StatusBadRequest, "bad JSON: %v", err)

		return
	}

	f.Type = strings.ToLower(strings.ReplaceAll(f.Type, "-", "_"))

	switch f.Type {
	case "unreachable", "rpc_error", "slow":
	default:
		httpError(w, http.StatusBadRequest, "type must be unreachable, rpc_error or slow, got %q", f.Type)

		return
	}

	if f.Type == "slow" && f.Method == "" {
		f.Method = "ApplyConfiguration"
	}

	if f.Type == "slow" && f.DelaySeconds <= 0 {
		httpError(w, http.StatusBadRequest, "slow faults need delay_seconds > 0")

		return
	}

	s.faults.add(&f)

	if f.Type == "unreachable" {
		s.mu.Lock()
		for _, n := range s.nodes {
			if f.Address == "" || f.Address == n.addr() {
				n.closeListenerLocked()
			}
		}
		s.mu.Unlock()
	}

	s.log.Printf("fault added: %+v", f)
	writeJSON(w, http.StatusOK, map[string]any{"faults": s.faults.list()})
}

// handleAlarm raises an etcd alarm on a control plane's member: {"address", "alarm": "NOSPACE"|"CORRUPT"}.
func (s *Sim) handleAlarm(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Address string `json:"address"`
		Alarm   string `json:"alarm"`
	}

	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "bad JSON: %v", err)

		return
	}

	req.Alarm = strings.ToUpper(req.Alarm)
	if req.Alarm != "NOSPACE" && req.Alarm != "CORRUPT" {
		httpError(w, http.StatusBadRequest, "alarm must be NOSPACE or CORRUPT, got %q", req.Alarm)

		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()

	n := s.byAddr[req.Address]
	if n == nil || !n.rec.EtcdMember {
		httpError(w, http.StatusNotFound, "no etcd member at %q", req.Address)

		return
	}

	s.alarms[n.rec.EtcdMemberID] = req.Alarm
	writeJSON(w, http.StatusOK, s.etcdReportLocked())
}

// handleSchematic registers a schematic with the simulated Image Factory: {"id", "extensions": [...]}.
func (s *Sim) handleSchematic(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ID         string   `json:"id"`
		Extensions []string `json:"extensions"`
	}

	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.ID == "" {
		httpError(w, http.StatusBadRequest, "want {\"id\": \"<schematic>\", \"extensions\": [...]}")

		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()

	s.schematicsLocked()[req.ID] = append([]string{}, req.Extensions...)
	_ = s.saveLocked()
	writeJSON(w, http.StatusOK, s.schematicsLocked())
}
