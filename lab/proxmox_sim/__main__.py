# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: HomeCluster developers
"""`python -m proxmox_sim` (with lab/ on PYTHONPATH) runs the CLI."""

import sys

from proxmox_sim.pvesim_cli import main

sys.exit(main())
