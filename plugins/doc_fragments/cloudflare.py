# Copyright: HomeCluster developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  api_token:
    description:
      - Cloudflare API token (never logged). The permissions each module needs are in its description.
    type: str
    required: true
  api_url:
    description: Base URL of the Cloudflare API v4 (a simulator or a proxy in tests).
    type: str
    default: https://api.cloudflare.com/client/v4
  validate_certs:
    description:
      - Verify the API's TLS certificate. Turning it off warns on every run; give O(ca_path) instead.
    type: bool
    default: true
  ca_path:
    description: CA bundle the API's certificate is verified against (system CAs when not set).
    type: path
  timeout:
    description: Seconds per HTTP request.
    type: int
    default: 30
  retries:
    description: Retries of a call answered 429 (after its C(Retry-After)) or 5xx.
    type: int
    default: 5
"""
