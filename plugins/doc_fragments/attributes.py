# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations


class ModuleDocFragment:
    """Attributes every homecluster.platform module shares, on top of ansible.builtin.action_common_attributes
    (which gives each its description); a module states only where it differs."""

    DOCUMENTATION = r"""
attributes:
  idempotent:
    description: A second run with the same inputs reports no change.
    support: full
  platform:
    platforms: posix
"""
