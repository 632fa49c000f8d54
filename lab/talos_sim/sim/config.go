// SPDX-License-Identifier: GPL-3.0-or-later

package sim

import (
	"errors"
	"fmt"
	"net/url"

	talosconfig "github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
)

// parsedConfig is a machine config with the fields the simulator acts on.
type parsedConfig struct {
	Raw      []byte
	Provider talosconfig.Provider

	Type        machine.Type
	Hostname    string
	ClusterName string
	ClusterID   string
	Endpoint    *url.URL
	CertSANs    []string
	NodeLabels  map[string]string
	InstallDisk string

	OSCA      *keyPair // machine.ca (key only on control planes)
	K8sCA     *keyPair // cluster.ca
	SAKeyPEM  []byte   // cluster.serviceAccount.key
	HasEtcdCA bool
}

func parseConfig(data []byte) (pc *parsedConfig, err error) {
	p, err := configloader.NewFromBytes(data)
	if err != nil {
		return nil, err
	}

	pc = &parsedConfig{Raw: data, Provider: p}

	// accessors of absent documents may dereference nil: report instead of crashing
	defer func() {
		if r := recover(); r != nil {
			pc, err = nil, fmt.Errorf("reading the machine config: %v", r)
		}
	}()

	if p.RawV1Alpha1() == nil || p.RawV1Alpha1().MachineConfig == nil {
		return pc, nil
	}

	m := p.Machine()
	pc.Type = m.Type()

	if sec := m.Security(); sec != nil {
		pc.CertSANs = sec.CertSANs()

		if ca := sec.IssuingCA(); ca != nil && len(ca.Crt) > 0 {
			pc.OSCA, err = parseKeyPair(ca.Crt, ca.Key)
			if err != nil {
				return nil, fmt.Errorf("machine.ca: %w", err)
			}
		}
	}

	if hc := p.NetworkHostnameConfig(); hc != nil && hc.Hostname() != "" {
		pc.Hostname = hc.Hostname()
	} else if raw := p.RawV1Alpha1().MachineConfig; raw.MachineNetwork != nil && raw.MachineNetwork.NetworkHostname != "" {
		pc.Hostname = raw.MachineNetwork.NetworkHostname
	}

	if inst := m.Install(); inst != nil {
		pc.InstallDisk = inst.Disk()
	}

	if nc := p.K8sNodeConfig(); nc != nil {
		pc.NodeLabels = nc.Labels()
	}

	if kc := p.K8sClusterConfig(); kc != nil {
		pc.ClusterName = kc.ClusterName()
		pc.Endpoint = kc.ClusterEndpoint()
	}

	if di := p.DiscoveryIdentityConfig(); di != nil {
		pc.ClusterID = di.ClusterID()
	}

	if pc.ClusterID == "" {
		pc.ClusterID = pc.ClusterName
	}

	if cac := p.K8sAPIServerCAConfig(); cac != nil {
		if ca := cac.IssuingCA(); ca != nil && len(ca.Crt) > 0 {
			pc.K8sCA, err = parseKeyPair(ca.Crt, ca.Key)
			if err != nil {
				return nil, fmt.Errorf("kubernetes API server CA: %w", err)
			}
		}
	}

	if sa := p.K8sServiceAccountConfig(); sa != nil {
		if k := sa.IssuingKey(); k != nil {
			pc.SAKeyPEM = k.Key
		}
	}

	if c := p.Cluster(); c != nil && c.Etcd() != nil {
		ca := c.Etcd().CA()
		pc.HasEtcdCA = ca != nil && len(ca.Crt) > 0
	}

	return pc, nil
}

// hasMachine reports whether the config carries a v1alpha1 machine section.
func (pc *parsedConfig) hasMachine() bool {
	return pc != nil && pc.Provider.RawV1Alpha1() != nil && pc.Provider.RawV1Alpha1().MachineConfig != nil
}

var errNoOSCA = errors.New("machine config has no machine.ca")
