# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""Proxmox VE API simulator for the HomeCluster lab (see README.md)."""
