#!/usr/bin/python
# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
module: talos_certificates_info
short_description: Report when the cluster's certificates expire
version_added: 0.2.0
description:
  - Reads the certificates of the files this collection keeps on the controller and reports their
    subject, issuer, expiry date and the whole days left. It reads the talosconfig's client certificate
    and CA of every context, and the kubeconfig's client certificates and cluster CAs. From the Talos
    secrets bundle it reads the Talos OS, Kubernetes, aggregator and etcd CAs.
  - Reads files only; no cluster is contacted and nothing is written. The result holds
    certificates, never a private key.
  - A secrets bundle encrypted with SOPS is decrypted in memory with C(sops -d).
  - Client certificates are renewed by the Talos layer (C(talos_talosconfig) and C(talos_kubeconfig),
    O(warn_days) there is C(renew_before_days)). A CA near its end needs a CA rotation, which this
    module only reports.
  - It takes the talos action group's connection options, so one C(module_defaults) serves the
    family. It uses O(talosconfig) (the file read) and O(talos_context) (only that context is read).
    It runs no C(talosctl), so O(talosctl_path), O(endpoints) and O(command_timeout) are unused.
options:
  kubeconfig:
    description: Path of the kubeconfig. Leave it unset to skip it.
    type: path
  secrets_file:
    description:
      - Path of the Talos secrets bundle (C(talosctl gen secrets)), plain or SOPS-encrypted.
      - Leave it unset to skip it.
    type: path
  warn_days:
    description: A certificate with fewer days left than this is listed in RV(expiring).
    type: int
    default: 30
  sops_path:
    description: The C(sops) binary, for a SOPS-encrypted O(secrets_file) (default from E(PATH)).
    type: path
  sops_age_key_file:
    description:
      - The age identity that decrypts a SOPS-encrypted O(secrets_file).
      - Default E(SOPS_AGE_KEY_FILE), then C(~/.config/sops/age/keys.txt).
    type: path
extends_documentation_fragment:
  - homecluster.platform.attributes
  - ansible.builtin.action_common_attributes
  - homecluster.platform.talosctl
attributes:
  check_mode:
    support: full
    details: The module only reads; check mode reports the same.
  diff_mode:
    support: none
  idempotent:
    description: It only reads; every run reports no change.
    support: full
requirements:
  - cryptography
  - PyYAML
author:
  - HomeCluster developers (@homecluster)
"""

EXAMPLES = r"""
- name: Report the certificates' expiry
  homecluster.platform.talos_certificates_info:
    talosconfig: "{{ inventory_dir }}/talos/talosconfig"
    kubeconfig: "{{ inventory_dir }}/talos/kubeconfig"
    secrets_file: "{{ inventory_dir }}/talos/secrets.yaml"
    warn_days: 60
  register: certs

- name: Fail a scheduled check when one expires within 60 days
  ansible.builtin.assert:
    that: certs.expiring | length == 0
    fail_msg: "{{ certs.expiring | map(attribute='name') | join(', ') }} expire within 60 days"
"""

RETURN = r"""
certificates:
  description: Every certificate found, soonest expiry first.
  returned: always
  type: list
  elements: dict
  contains:
    source:
      description: C(talosconfig), C(kubeconfig) or C(secrets).
      type: str
    name:
      description: Where in the file, e.g. C(talosconfig home client) or C(secrets k8s CA).
      type: str
    ca:
      description: Whether it is a certificate authority.
      type: bool
    subject:
      description: The subject, RFC 4514.
      type: str
    issuer:
      description: The issuer, RFC 4514.
      type: str
    not_after:
      description: Expiry, ISO 8601 UTC.
      type: str
    days_left:
      description: Whole days until expiry (negative once expired).
      type: int
  sample:
    - {source: talosconfig, name: talosconfig home client, ca: false, subject: O=os:admin, issuer: O=talos,
       not_after: '2027-12-01T10:00:00+00:00', days_left: 364}
expiring:
  description: The entries of RV(certificates) with fewer than O(warn_days) days left.
  returned: always
  type: list
  elements: dict
"""

import base64
import datetime

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homecluster.platform.plugins.module_utils._sops import decrypt_yaml_if_sops
from ansible_collections.homecluster.platform.plugins.module_utils._talosctl import talosctl_argument_spec

try:
    import yaml
except ImportError:  # pragma: no cover
    yaml = None

try:
    from cryptography import x509
    from cryptography.x509.oid import ExtensionOID
except ImportError:  # pragma: no cover
    x509 = None

SECRETS_CAS = (("os", "Talos OS CA"), ("k8s", "Kubernetes CA"), ("k8saggregator", "aggregator CA"),
               ("etcd", "etcd CA"))


def describe(source, name, data, now):
    """One certificate's entry; *data* is a base64-encoded PEM (as in these files) or a PEM."""
    raw = data.encode() if isinstance(data, str) else data
    if b"-----BEGIN" not in raw:
        raw = base64.b64decode(raw)
    cert = x509.load_pem_x509_certificate(raw)
    try:
        is_ca = cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    end = cert.not_valid_after_utc
    return {"source": source, "name": name, "ca": bool(is_ca), "subject": cert.subject.rfc4514_string(),
            "issuer": cert.issuer.rfc4514_string(), "not_after": end.isoformat(),
            "days_left": (end - now).days}


def read_yaml(module, path, what):
    try:
        with open(path) as handle:
            return handle.read()
    except OSError as e:
        module.fail_json(msg=f"cannot read the {what} {path}: {e.strerror}"
                             f" - set {what} to the file the Talos layer wrote")
    return None


def from_talosconfig(data, now, only=None):
    out = []
    for ctx, entry in sorted(((data or {}).get("contexts") or {}).items()):
        if only and ctx != only:
            continue
        for key, label in (("crt", "client"), ("ca", "CA")):
            if (entry or {}).get(key):
                out.append(describe("talosconfig", f"talosconfig {ctx} {label}", entry[key], now))
    return out


def from_kubeconfig(data, now):
    out = []
    for cluster in (data or {}).get("clusters") or []:
        value = (cluster.get("cluster") or {}).get("certificate-authority-data")
        if value:
            out.append(describe("kubeconfig", f"kubeconfig {cluster.get('name')} CA", value, now))
    for user in (data or {}).get("users") or []:
        value = (user.get("user") or {}).get("client-certificate-data")
        if value:
            out.append(describe("kubeconfig", f"kubeconfig {user.get('name')} client", value, now))
    return out


def from_secrets(data, now):
    certs = (data or {}).get("certs") or {}
    return [describe("secrets", f"secrets {label}", certs[key]["crt"], now)
            for key, label in SECRETS_CAS if (certs.get(key) or {}).get("crt")]


def secrets_text(module, path):
    text = read_yaml(module, path, "secrets_file")
    plain = decrypt_yaml_if_sops(module, text, path, sops_path=module.params["sops_path"],
                                 age_key_file=module.params["sops_age_key_file"])
    return yaml.safe_load(text if plain is None else plain)


def main():
    module = AnsibleModule(
        argument_spec={
            **talosctl_argument_spec(),
            "kubeconfig": {"type": "path"},
            "secrets_file": {"type": "path"},
            "warn_days": {"type": "int", "default": 30},
            "sops_path": {"type": "path"},
            "sops_age_key_file": {"type": "path"},
        },
        required_one_of=[["talosconfig", "kubeconfig", "secrets_file"]],
        supports_check_mode=True,
    )
    if yaml is None or x509 is None:
        module.fail_json(msg="PyYAML and cryptography are required on the controller")
    p = module.params
    now = datetime.datetime.now(datetime.UTC)
    certs = []
    readers = (("talosconfig", lambda data: from_talosconfig(data, now, p["talos_context"])),
               ("kubeconfig", lambda data: from_kubeconfig(data, now)))
    for option, reader in readers:
        if p[option]:
            try:
                certs += reader(yaml.safe_load(read_yaml(module, p[option], option)))
            except (ValueError, TypeError, KeyError) as e:
                module.fail_json(msg=f"{option} {p[option]} holds a certificate that cannot be read: {e}")
    if p["secrets_file"]:
        try:
            certs += from_secrets(secrets_text(module, p["secrets_file"]), now)
        except (ValueError, TypeError, KeyError) as e:
            module.fail_json(msg=f"secrets_file {p['secrets_file']} holds a certificate that cannot be read: {e}")
    certs.sort(key=lambda c: (c["days_left"], c["name"]))
    module.exit_json(changed=False, certificates=certs,
                     expiring=[c for c in certs if c["days_left"] < p["warn_days"]])


if __name__ == "__main__":
    main()
