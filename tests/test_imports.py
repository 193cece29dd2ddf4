"""Commands that only read the database must not import torch (they stay instant)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import invoke

PROBE = """
import sys
from adaptbench.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print("TORCH" if "torch" in sys.modules else "NO-TORCH", code, file=sys.stderr)
"""


@pytest.mark.parametrize("args", [
    ["report"], ["report", "wins"], ["report", "--format", "csv"], ["status"], ["ls"], ["--help"],
    ["report", "--help"], ["curves"], ["optims"], ["optims", "--format", "json"],
])
def test_read_only_commands_do_not_import_torch(workdir, args):
    assert invoke("queue", "-o", "adam", "-t", "sparse-text", "--seeds", "1").code == 0
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          cwd=workdir, timeout=120)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("NO-TORCH"), proc.stderr
    assert last.endswith(" 0"), proc.stderr
