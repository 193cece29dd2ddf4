"""The installed package (not the source tree) finds its built-in tasks from any folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_builtin_tasks_from_another_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ADAPTBENCH_TASKS")}
    proc = subprocess.run(
        [sys.executable, "-m", "adaptbench.cli", "tasks", "--format", "json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    tasks = json.loads(proc.stdout)
    assert len(tasks) >= 10
    assert len({t["type"] for t in tasks}) >= 7
    # the measured figures ship with the package (package data), for every built-in task
    assert all(t["seconds"] is not None and t["params"] is not None for t in tasks)
