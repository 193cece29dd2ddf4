"""Wall-clock seconds of one default run of every built-in task, on one CPU thread.

For each task, one run per optimizer (adam, rmsprop, adagrad, sgd) at the task's default steps
and batch size, seed 0, through `adaptbench.train.execute` -- the code path a worker runs, build
and evaluations (validation and test every `eval_every` steps, all splits at the end) included.
The learning rate is the middle of the task's grid; a run that diverges stops early and would
under-state the time, so it is repeated at the next smaller grid learning rate. A 10-step run
of each task first absorbs one-time costs (imports, first kernel calls, cached data sets).

    python benchmarks/task_timing.py                      # table only
    python benchmarks/task_timing.py --json               # also write adaptbench/builtin_tasks/timings.json
    python benchmarks/task_timing.py --tasks sparse-text,char-rnn --json out.json

The table shows wall-clock seconds per optimizer, their mean, and the mean process CPU seconds
(close to the wall time on an idle machine, and still meaningful on a busy one). The JSON holds
``{"seconds": {task: mean wall seconds}, "cpu_seconds": {task: ...}, "size": {task:
{"params": ..., "examples": ...}}, "gradient_density": {task: share of parameter coordinates
with a non-zero gradient per batch (`adaptbench.train.gradient_density`)}, "machine": {...}}``
(`adaptbench tasks` shows it);
tasks not timed this time keep their previous entries.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from adaptbench import devices
from adaptbench.spec import RunSpec
from adaptbench.tasks import Task, load_tasks
from adaptbench.train import execute, gradient_density

OPTIMIZERS = ("adam", "rmsprop", "adagrad", "sgd")
DEFAULT_JSON = Path(__file__).resolve().parent.parent / "adaptbench" / "builtin_tasks" / "timings.json"


@dataclass(frozen=True)
class Timing:
    """One timed run: wall-clock and process CPU seconds, the lr used and the run's status."""

    seconds: float
    cpu_seconds: float
    lr: float
    status: str


def timed_run(task: Task, optimizer: str, device: Any) -> Timing:
    """One default-length run, timed; retried at smaller lrs while it diverges."""
    lrs = sorted(task.lrs)
    middle = len(lrs) // 2
    for lr in reversed(lrs[: middle + 1]):
        spec = RunSpec(task.name, optimizer, lr, 0, task.steps, task.batch_size)
        cpu_start = time.process_time()
        result = execute(spec, task, device)
        timing = Timing(result.wall_seconds, time.process_time() - cpu_start, lr, result.status)
        if result.status == "done":
            break
    return timing


def describe_problem(task: Task, device: Any) -> tuple[int, int]:
    """(parameter count, examples over all splits) of the task's seed-0 problem."""
    problem = task.build(0, device)
    params = sum(p.numel() for p in problem.model.parameters())
    examples = sum(split[0].shape[0] for split in (problem.train, problem.val, problem.test))
    return params, examples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="", help="comma-separated task names (default: all)")
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda, mps (default: cpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    parser.add_argument(
        "--json", nargs="?", const=str(DEFAULT_JSON), default=None,
        help=f"write per-task mean seconds here (default path: {DEFAULT_JSON})",
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = devices.choose(args.device)
    tasks = load_tasks()
    names = [n.strip() for n in args.tasks.split(",") if n.strip()] or sorted(tasks)
    optimizers = [o.strip() for o in args.optimizers.split(",") if o.strip()]

    header = f"{'task':20} {'type':10} {'params':>8} {'examples':>8} {'steps':>6}"
    header += "".join(f" {o:>8}" for o in optimizers) + f" {'seconds':>8} {'cpu':>8} {'density':>8}"
    print(f"# one default run per optimizer, device {devices.describe(device)}, "
          f"{args.threads} thread(s), torch {torch.__version__}")
    print(header)
    mean_seconds: dict[str, float] = {}
    mean_cpu: dict[str, float] = {}
    sizes: dict[str, dict[str, int]] = {}
    density: dict[str, float] = {}
    any_diverged = False
    for name in names:
        task = tasks[name]
        params, examples = describe_problem(task, device)
        sizes[name] = {"params": params, "examples": examples}
        density[name] = round(gradient_density(task, device=device), 4)
        warm_up = RunSpec(task.name, optimizers[0], min(task.lrs), 0, 10, task.batch_size)
        execute(warm_up, task, device)  # one-time costs (lazy imports, first kernels) go here
        runs = [timed_run(task, opt, device) for opt in optimizers]
        mean_seconds[name] = round(statistics.mean(r.seconds for r in runs), 3)
        mean_cpu[name] = round(statistics.mean(r.cpu_seconds for r in runs), 3)
        any_diverged |= any(r.status != "done" for r in runs)
        cells = "".join(
            f" {r.seconds:>8.2f}" if r.status == "done" else f" {r.seconds:>7.2f}!" for r in runs
        )
        print(f"{name:20} {task.task_type:10} {params:>8} {examples:>8} {task.steps:>6}"
              f"{cells} {mean_seconds[name]:>8.2f} {mean_cpu[name]:>8.2f} {density[name]:>8.3f}",
              flush=True)
    if any_diverged:
        print("(! = diverged at every lr tried, so the run stopped early)")

    if args.json:
        path = Path(args.json)
        old: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        payload = {
            "seconds": {**old.get("seconds", {}), **mean_seconds},
            "cpu_seconds": {**old.get("cpu_seconds", {}), **mean_cpu},
            "size": {**old.get("size", {}), **sizes},
            "gradient_density": {**old.get("gradient_density", {}), **density},
            "machine": {
                "device": devices.describe(device),
                "threads": args.threads,
                "torch": torch.__version__,
                "python": platform.python_version(),
                "processor": platform.processor() or platform.machine(),
                "optimizers": optimizers,
            },
        }
        path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
