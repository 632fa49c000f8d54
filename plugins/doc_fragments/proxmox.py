# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
from __future__ import annotations


class ModuleDocFragment:
    """Connection options shared by the homecluster.platform.proxmox_* modules."""

    DOCUMENTATION = r"""
options:
  api_host:
    description:
      - Address or host name of one Proxmox VE node answering the API (any node of the cluster).
    type: str
    required: true
  api_port:
    description: Port of the Proxmox VE API.
    type: int
    default: 8006
  api_user:
    description:
      - User the API is called as, with its realm, for example C(automation@pve).
    type: str
    required: true
  api_token_id:
    description:
      - Name of the API token of O(api_user) (C(ansible)), or the full token id
        (C(automation@pve!ansible)).
      - Exactly one of O(api_token_id) and O(api_password) is needed.
    type: str
  api_token_secret:
    description: Secret (UUID) of the API token. Required with O(api_token_id).
    type: str
  api_password:
    description:
      - Password of O(api_user); the module logs in for a ticket and sends the CSRF token on writes.
    type: str
  validate_certs:
    description:
      - Verify the API's TLS certificate. On by default; turn it off only for a first look at a
        fresh install, and prefer O(ca_path) with the cluster's CA (C(/etc/pve/pve-root-ca.pem)).
    type: bool
    default: true
  ca_path:
    description:
      - PEM bundle of the CA(s) that signed the API certificate.
    type: path
  api_timeout:
    description: Seconds one HTTP request may take.
    type: int
    default: 30
  task_timeout:
    description: Seconds to wait for one asynchronous Proxmox task (UPID) to finish.
    type: int
    default: 600
notes:
  - Talks to the API with C(proxmoxer). Failed tasks are reported with their UPID, exit status and
    the end of the task log; privilege errors name the path and privilege to grant.
  - A VM that is locked by a running task (C(VM is locked (...)), C(can't lock file ... got timeout))
    is retried for up to 30 seconds before the module fails.
requirements:
  - proxmoxer >= 2.0
  - requests
"""
