# SPDX-License-Identifier: GPL-3.0-or-later
"""Make secrets_audit importable by the tests here and by tests/e2e."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
