// SPDX-License-Identifier: GPL-3.0-or-later

package sim

import (
	"strings"
	"testing"

	"github.com/siderolabs/talos/pkg/machinery/nethelpers"
)

// The host firewall documents platform_security renders (NetworkDefaultActionConfig and
// NetworkRuleConfig) in a machine config: the simulator parses them with Talos's own config
// loader and validates them as machined does, and refuses a malformed rule.
const firewallDocs = `---
apiVersion: v1alpha1
kind: NetworkDefaultActionConfig
ingress: block
---
apiVersion: v1alpha1
kind: NetworkRuleConfig
name: homecluster-apid
portSelector:
  ports: [50000]
  protocol: tcp
ingress:
  - subnet: 192.168.1.0/24
---
apiVersion: v1alpha1
kind: NetworkRuleConfig
name: homecluster-etcd
portSelector:
  ports: [2379-2380]
  protocol: tcp
ingress:
  - subnet: 192.168.10.0/24
`

func TestFirewallDocumentsAccepted(t *testing.T) {
	genOnce.Do(generateConfigs)

	if genErr != nil {
		t.Fatal(genErr)
	}

	pc, err := parseConfig(append(append([]byte{}, genCP...), []byte(firewallDocs)...))
	if err != nil {
		t.Fatalf("firewall documents refused: %v", err)
	}

	if _, err = pc.Provider.Validate(simMode{installed: true}); err != nil {
		t.Fatalf("firewall documents do not validate: %v", err)
	}

	if got := pc.Provider.NetworkRules().DefaultAction(); got != nethelpers.DefaultActionBlock {
		t.Fatalf("default action %v, want block", got)
	}

	rules := pc.Provider.NetworkRules().Rules()
	if len(rules) != 2 {
		t.Fatalf("%d rules, want 2", len(rules))
	}

	if p := rules[1].PortRanges(); len(p) != 1 || p[0] != [2]uint16{2379, 2380} {
		t.Fatalf("etcd port range %v, want 2379-2380", p)
	}
}

func TestFirewallMalformedRuleRefused(t *testing.T) {
	genOnce.Do(generateConfigs)

	if genErr != nil {
		t.Fatal(genErr)
	}

	bad := strings.Replace(firewallDocs, "subnet: 192.168.1.0/24", "subnet: 192.168.1.0/99", 1)

	pc, err := parseConfig(append(append([]byte{}, genCP...), []byte(bad)...))
	if err == nil {
		_, err = pc.Provider.Validate(simMode{installed: true})
	}

	if err == nil {
		t.Fatal("a rule with subnet 192.168.1.0/99 was accepted")
	}
}
