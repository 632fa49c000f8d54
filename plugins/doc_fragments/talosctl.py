# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations


class ModuleDocFragment:
    """Connection options shared by every homecluster.platform.talos_* module."""

    DOCUMENTATION = r"""
options:
  talosctl_path:
    description:
      - Path to the C(talosctl) binary on the controller.
      - When unset, C(talosctl) is looked up on E(PATH).
    type: path
  talosconfig:
    description:
      - Path to the talosconfig holding the client certificate used for mutual TLS.
      - Not needed for nodes in maintenance mode, which are reached with C(--insecure).
    type: path
  endpoints:
    description:
      - Talos API endpoints (control-plane addresses) that forward requests to the nodes.
      - When empty, the endpoints of the talosconfig context are used.
    type: list
    elements: str
    default: []
  talos_context:
    description:
      - Name of the talosconfig context to use instead of the current one.
    type: str
  command_timeout:
    description:
      - Seconds after which one C(talosctl) call is abandoned and the task fails.
    type: int
    default: 60
notes:
  - Every call runs C(talosctl) on the controller with C(LANG=C) and an environment stripped of
    C(TALOSCONFIG), so the result does not depend on the shell it was started from.
  - Failures report C(cmd), C(rc), C(stdout), C(stderr) and an C(error_kind) (C(unreachable),
    C(tls), C(already_exists), C(timeout), ...).
requirements:
  - talosctl on the controller, of the same minor version as the nodes.
"""
