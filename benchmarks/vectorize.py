"""Runs per second, one after another vs stacked in one vectorized pass, on every built-in task.

For each task: a group of seeds x lrs (default 5 x 4: the middle four of the task's lr grid) of
one optimizer, trained three times in this process: one run after another (`train.execute`,
what a worker does with --vectorize off), as one stacked group (`train.execute_group(...,
"on")`), and under `--vectorize auto` as a worker process meeting the group for the first time
(`1st group`: its measurement, or a task's refusal to stack, included; a later group of the
same kind in that process is trained as `auto` decided, without either), all with
evaluations and the task build included, after an untimed warm-up group of 2 members
(imports, first kernel calls). Also: the speed-up of the training steps alone (20 steps of
the group stacked vs 20 steps of one run, times the group's size), what `auto` decided for
that group, and the largest relative difference between the two modes' curves (float32
rounding, amplified where a run is unstable; 0 = bit-equal).

Then the full `adaptive-lr` study's training time projected from these figures: for every
(task, budget) of the study, its runs x the measured seconds per run at the default budget x
the budget's multiple, one after another vs under `auto` (stacked where `auto` decided to
stack the group measured here, its measurement left out: once per worker process and kind of
group). A projection: the decision and the speed-up measured at this budget and for a group
of 20 stand for every budget and group size of the study, where `auto` decides each anew
(on skipgram its decision differs between 1x and 16x). Not a timing of the whole study
(hours on this machine).

    python benchmarks/vectorize.py                       # every task, adam, default budgets
    python benchmarks/vectorize.py --tasks tabular-mlp,rosenbrock --optimizer sgd
    python benchmarks/vectorize.py --steps-scale 0.25    # quarter budgets: a quicker look
    python benchmarks/vectorize.py --json out.json
    python benchmarks/vectorize.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections import Counter
from typing import Any

import torch

from adaptbench import devices, stacked, train
from adaptbench.spec import RunSpec
from adaptbench.tasks import Task, load_tasks

GROUP_SIZE = 32  # a worker's default --group-size


def specs_for(task: Task, optimizer: str, seeds: int, lrs: int, steps: int) -> list[RunSpec]:
    grid = sorted(task.lrs)
    start = max(0, (len(grid) - lrs) // 2)
    chosen = grid[start : start + lrs]
    return [RunSpec(task=task.name, optimizer=optimizer, lr=lr, seed=seed, steps=steps,
                    batch_size=task.batch_size) for seed in range(seeds) for lr in chosen]


def worst_difference(a: list[train.RunResult], b: list[train.RunResult]) -> float:
    worst = 0.0
    for x, y in zip(a, b):
        for p, q in zip(x.curve, y.curve):
            for key in ("loss", "metric"):
                if p[key] is not None and q[key] is not None:
                    worst = max(worst, abs(p[key] - q[key]) / max(abs(q[key]), 1e-6))
    return worst


def measure(task: Task, optimizer: str, seeds: int, lrs: int, steps: int, device: Any) -> dict[str, Any]:
    specs = specs_for(task, optimizer, seeds, lrs, steps)
    train.execute_group(specs[:2], task, device, "on")  # warm-up
    devices.synchronize(device)
    started = time.perf_counter()
    alone = [train.execute(spec, task, device) for spec in specs]
    devices.synchronize(device)
    sequential = time.perf_counter() - started
    reasons: list[str] = []
    started = time.perf_counter()
    group = train.execute_group(specs, task, device, "on", explain=reasons.append)
    devices.synchronize(device)
    vectorized = time.perf_counter() - started
    stacked._DECIDED.clear()  # as a worker process meets the group first: measure, then train
    stacked._REFUSED.clear()
    started = time.perf_counter()
    chosen = train.execute_group(specs, task, device, "auto")
    devices.synchronize(device)
    under_auto = time.perf_counter() - started
    auto = chosen[0].execution == "vectorized"
    try:
        members = stacked.Stacked(specs, task, device)
    except stacked.Unstackable:
        steps_only = float("nan")
    else:
        per_step, alone_step = stacked._seconds_per_step(
            members, train.Single(specs[0], task, device, members.built[specs[0].seed]), 20)
        steps_only = alone_step * len(specs) / per_step
    return {
        "task": task.name, "runs": len(specs), "steps": steps,
        "sequential_runs_per_s": len(specs) / sequential,
        "vectorized_runs_per_s": len(specs) / vectorized,
        "speedup": sequential / vectorized,
        "auto_first_group_runs_per_s": len(specs) / under_auto,
        "auto_first_group_speedup": sequential / under_auto,
        "steps_only_speedup": steps_only,
        "execution": group[0].execution, "auto": "stack" if auto else "one by one",
        "unstackable": reasons[0] if reasons else "",
        "worst_relative_difference": worst_difference(group, alone),
        "statuses": dict(Counter(r.status for r in alone)),
    }


def project_study(rows: dict[str, dict[str, Any]], tasks: dict[str, Task], scale: float) -> dict[str, float]:
    """The adaptive-lr study's training seconds, one by one vs under auto, from `rows` (each
    task's figures at the budget measured stand for all of its budgets)."""
    from adaptbench.spec import STUDY_PRESETS, Grid, expand_study

    preset = STUDY_PRESETS["adaptive-lr"]
    names = sorted(n for n, t in tasks.items() if t.claims and n in rows)
    grid = Grid(tasks=names, optimizers=preset.optimizers, seeds=tuple(range(preset.seeds)),
                study=preset.name, lr_grid=True)
    specs = expand_study(grid, preset, {n: tasks[n] for n in names})
    counts = Counter((s.task, s.steps) for s in specs)
    one_by_one = auto = 0.0
    for (name, steps), runs in counts.items():
        row = rows[name]
        per_run = 1.0 / row["sequential_runs_per_s"] * steps / (tasks[name].steps * scale)
        one_by_one += runs * per_run
        gain = row["speedup"] if row["auto"] == "stack" else 1.0
        auto += runs * per_run / gain
    return {"runs": sum(counts.values()), "one_by_one_hours": one_by_one / 3600,
            "auto_hours": auto / 3600, "speedup": one_by_one / auto if auto else float("nan")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="", help="comma-separated task names (default: all)")
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--lrs", type=int, default=4)
    parser.add_argument("--steps-scale", type=float, default=1.0,
                        help="budget as a multiple of each task's default steps")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default="", help="also write the figures to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = devices.choose(args.device)
    tasks = load_tasks()
    names = [n for n in args.tasks.split(",") if n] or sorted(tasks)
    where = devices.describe(device)
    print(f"# {args.seeds} seeds x {args.lrs} lrs of {args.optimizer} per task, device {where}, "
          f"{args.threads} thread(s), torch {torch.__version__}, {platform.processor() or platform.machine()}")
    print(f"{'task':20s} {'steps':>6s} {'one by one':>11s} {'stacked':>9s} {'speed-up':>8s} "
          f"{'steps only':>10s} {'auto':10s} {'1st group':>9s} {'max diff':>8s}")
    rows = {}
    for name in names:
        task = tasks[name]
        steps = max(1, round(task.steps * args.steps_scale))
        row = measure(task, args.optimizer, args.seeds, args.lrs, steps, device)
        rows[name] = row
        print(f"{name:20s} {steps:6d} {row['sequential_runs_per_s']:9.2f}/s "
              f"{row['vectorized_runs_per_s']:7.2f}/s {row['speedup']:7.2f}x "
              f"{row['steps_only_speedup']:9.2f}x {row['auto']:10s} "
              f"{row['auto_first_group_speedup']:8.2f}x {row['worst_relative_difference']:8.1e}"
              + (f"\n    {row['unstackable'][:92]}" if row["unstackable"] else ""), flush=True)
    study = project_study(rows, tasks, args.steps_scale)
    if study["runs"]:
            print(f"# adaptive-lr study ({study['runs']} selection runs over the tasks measured), "
              f"training time\n# projected from these figures: one by one "
              f"{study['one_by_one_hours']:.1f} h, auto {study['auto_hours']:.1f} h "
              f"({study['speedup']:.2f}x)")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"device": where, "torch": torch.__version__, "threads": args.threads,
                       "optimizer": args.optimizer, "tasks": rows, "study": study}, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
