"""scripts/demo.py, run as a user runs it: the whole story, and output a log can hold."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_demo_runs_and_prints_no_escape_codes_into_a_pipe(tmp_path):
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
           "REGSYNC_DEMO_DIR": str(tmp_path / "demo")}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py")], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "\x1b" not in proc.stdout + proc.stderr
    assert "$ regsync plan --detailed-exitcode   # nothing left to do" in proc.stdout
    assert "demo: done." in proc.stdout
