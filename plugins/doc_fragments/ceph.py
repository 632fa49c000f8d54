# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
from __future__ import annotations


class ModuleDocFragment:
    """Connection options shared by every homecluster.platform.ceph_* module."""

    DOCUMENTATION = r"""
options:
  transport:
    description:
      - How the C(ceph) CLI is reached.
      - C(local) runs C(ceph) on the controller with O(ceph_conf) and O(keyring).
      - C(toolbox) runs C(kubectl exec deployment/<toolbox_deployment> -- ceph ...) in the Rook toolbox,
        which carries its own ceph.conf and keyring.
    type: str
    choices: [local, toolbox]
    default: local
  ceph_binary:
    description: Name on E(PATH) or absolute path of the C(ceph) CLI (transport C(local)).
    type: str
    default: ceph
  ceph_conf:
    description:
      - Path to the ceph.conf naming the monitors (transport C(local)).
      - When unset, E(CEPH_CONF) or C(/etc/ceph/ceph.conf) is used, as by the CLI itself.
    type: path
  keyring:
    description:
      - Path to the keyring of O(client_name) (transport C(local)); keep it mode C(0600).
      - When unset, the C(keyring) setting of the ceph.conf applies.
    type: path
  client_name:
    description: Ceph user to authenticate as, for example C(client.admin).
    type: str
  connect_timeout:
    description:
      - Seconds the CLI waits for the monitors (C(--connect-timeout)); without a quorum the task
        then fails with a message saying so instead of hanging.
    type: int
    default: 10
  command_timeout:
    description:
      - Seconds after which one C(ceph) call is killed and the task fails (covers commands that
        reach the monitors but wait on a manager or OSDs).
    type: int
    default: 60
  kubectl_binary:
    description: Name on E(PATH) or absolute path of C(kubectl) (transport C(toolbox)).
    type: str
    default: kubectl
  kubeconfig:
    description: Kubeconfig for transport C(toolbox); when unset, E(KUBECONFIG) or C(~/.kube/config).
    type: path
  kube_context:
    description: Kubeconfig context for transport C(toolbox).
    type: str
  toolbox_namespace:
    description: Namespace of the Rook toolbox (transport C(toolbox)).
    type: str
    default: rook-ceph
  toolbox_deployment:
    description: Name of the Rook toolbox Deployment (transport C(toolbox)).
    type: str
    default: rook-ceph-tools
notes:
  - Every call asks for JSON output and runs with C(LANG=C) and an environment reduced to
    E(PATH), E(HOME), E(CEPH_CONF), E(CEPH_KEYRING), E(CEPH_ARGS) and E(KUBECONFIG).
  - Failures report C(cmd), C(rc), C(stdout) and C(stderr).
requirements:
  - The C(ceph) CLI (package ceph-common) on the controller for transport C(local); C(kubectl) and a
    running Rook toolbox for transport C(toolbox).
"""
