"""Seconds each `adaptbench report` sub-command takes over a database of 100,000 stored runs.

Builds (once; reused if present) an SQLite results database with the real schema and synthetic
but realistically shaped runs: 100 tasks (variants of the built-in tasks, with their task types,
metrics, directions, budgets, evaluation intervals, 10-point lr grids and targets) x 10
optimizers x 10 learning rates x 10 seeds, over 7 task types. About 7% of the runs diverge
(at learning rates well above the optimizer's best), 0.5% failed; every finished run has its
learning curve (20 evaluations + step 0 on val / test, 20 on train, cut short where a run
diverged: 5.9 million curve points in all).

Each sub-command is then run end to end through the real entry point, `adaptbench.cli.main`, in
a fresh Python process (what the `adaptbench` script runs; output to /dev/null), so the
figure includes interpreter start-up and imports, as a user sees it. The best of `--repeat`
runs is reported, and also the time inside an already-started process (imports excluded).

    python benchmarks/report_speed.py                   # build /tmp/adaptbench-100k.db, time all
    python benchmarks/report_speed.py --db other.db --runs 20000 --repeat 1
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import os
import resource
import sqlite3
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np

# (name, task_type, metric, higher_is_better, steps, eval_every, target, start, best) where
# start/best are the metric at step 0 and the best achievable final value, like the real tasks;
# the synthetic runs evaluate every steps / EVALS steps instead of eval_every.
TEMPLATES = [
    ("sparse-text", "sparse", "accuracy", True, 600, 50, 0.65, 0.25, 0.72),
    ("hashed-ctr", "sparse", "logloss", False, 500, 50, 0.51, 0.69, 0.50),
    ("tabular-mlp", "dense", "accuracy", True, 800, 50, 0.82, 0.25, 0.86),
    ("digits-cnn", "vision", "accuracy", True, 400, 25, 0.97, 0.10, 0.98),
    ("digits-autoencoder", "vision", "mse", False, 1000, 50, 0.04, 0.10, 0.03),
    ("char-rnn", "sequence", "bpc", False, 600, 50, 1.0, 4.0, 0.9),
    ("reverse-attention", "sequence", "token_accuracy", True, 600, 50, 0.9, 0.1, 0.95),
    ("diabetes-mlp", "regression", "r2", True, 200, 25, 0.4, -1.0, 0.48),
    ("logistic-regression", "convex", "logloss", False, 400, 25, 0.1, 0.69, 0.08),
    ("noisy-quadratic", "convex", "excess_risk", False, 1000, 50, 0.05, 1.0, 0.02),
    ("rosenbrock", "nonconvex", "f", False, 2000, 100, 0.01, 4.0, 0.001),
]
LRS = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0]
# optimizer -> (log10 of its best lr, early speed, late quality): adagrad is fast early and
# plateaus, sgd is slow, the Adam family is good at small lrs.
OPTIMIZERS = {
    "sgd": (-0.5, 1.0, 0.93), "momentum": (-1.5, 1.6, 0.97), "nesterov": (-1.5, 1.7, 0.97),
    "adam": (-3.0, 2.2, 0.97), "adamw": (-3.0, 2.2, 0.97), "rmsprop": (-3.0, 2.0, 0.95),
    "adagrad": (-1.5, 3.0, 0.90), "adadelta": (0.0, 0.8, 0.90), "adamax": (-2.5, 1.8, 0.96),
    "nadam": (-2.7, 2.3, 0.97),
}
SEEDS = 10
EVALS = 20
COMMANDS = [
    ["report"],
    ["report", "summary", "--lr", "fixed"],
    ["report", "summary", "--ci", "bootstrap"],
    ["report", "summary", "--aggregate", "iqm"],
    ["report", "wins"],
    ["report", "wins", "--statistic", "improvement"],
    ["report", "ranks"],
    ["report", "compare", "adam", "sgd"],
    ["report", "profile"],
    ["report", "lr"],
    ["report", "speed"],
    ["report", "claims"],
]

# what the `adaptbench` console script runs (`python -m adaptbench.cli` would register the
# report commands on a second copy of the module)
ENTRY = "import sys; from adaptbench.cli import main; sys.argv[0] = 'adaptbench'; main()"

RUN_COLUMNS = [
    "spec_hash", "task", "task_type", "metric_name", "higher_is_better", "target", "optimizer",
    "params", "schedule", "lr", "seed", "steps", "batch_size", "eval_every", "study",
    "device_request", "status", "attempts", "created_at", "started_at", "finished_at",
    "final_train_loss", "final_val_loss", "final_test_loss", "final_train_metric",
    "final_val_metric", "final_test_metric", "best_val_metric", "best_val_step",
    "steps_to_target", "wall_seconds", "diverged_at_step", "device", "torch_version",
    "package_version", "host", "error",
]


def build(path: Path, runs: int) -> None:
    """Write the synthetic database: schema from adaptbench.store, rows by executemany."""
    from adaptbench.store import make_engine

    make_engine(f"sqlite:///{path}").dispose()
    rng = np.random.default_rng(0)
    per_task = len(OPTIMIZERS) * len(LRS) * SEEDS
    n_tasks = max(1, math.ceil(runs / per_task))
    rows, curves = [], []
    run_id = 0
    for t in range(n_tasks):
        name, kind, metric, hib, steps, _, target, start, best = TEMPLATES[t % len(TEMPLATES)]
        task = name if t < len(TEMPLATES) else f"{name}-{t // len(TEMPLATES)}"
        difficulty = rng.uniform(0.8, 1.2)
        evals = np.unique(np.linspace(0, steps, EVALS + 1).round().astype(int))
        for opt, (best_log_lr, speed, quality) in OPTIMIZERS.items():
            for lr in LRS:
                gap = abs(math.log10(lr) - best_log_lr - rng.normal(0, 0.2))
                q = quality * math.exp(-0.5 * gap**2) / difficulty
                for seed in range(SEEDS):
                    run_id += 1
                    if run_id > runs:
                        break
                    status = "done"
                    diverge_p = 0.0 if gap < 1.5 or math.log10(lr) < best_log_lr else 0.3
                    u = rng.uniform()
                    if u < diverge_p:
                        status = "diverged"
                    elif u > 0.995:
                        status = "failed"
                    noise = rng.normal(0, 0.01)
                    final = start + (best - start) * min(1.0, max(0.0, q + noise))
                    frac = np.exp(-speed * 4 * evals / steps * max(q, 0.05))
                    curve = final + (start - final) * frac
                    loss0, loss_final = 2.0, 2.0 * (1 - min(0.95, max(0.0, q + noise)))
                    loss_curve = loss_final + (loss0 - loss_final) * frac
                    reached = np.flatnonzero(curve >= target if hib else curve <= target)
                    to_target = int(evals[reached[0]]) if len(reached) else None
                    diverged_at = None
                    if status == "diverged":
                        diverged_at = int(rng.integers(1, steps))
                    row = {c: None for c in RUN_COLUMNS}
                    row.update(
                        spec_hash=hashlib.sha256(str(run_id).encode()).hexdigest()[:16],
                        task=task, task_type=kind, metric_name=metric, higher_is_better=hib,
                        target=target, optimizer=opt, params="{}", schedule="constant", lr=lr,
                        seed=seed, steps=steps, batch_size=64, eval_every=steps // EVALS, study="",
                        device_request="auto", status=status, attempts=1,
                        created_at="2025-01-01 00:00:00", device="cpu", host="bench",
                    )
                    if status == "done":
                        row.update(
                            final_train_loss=loss_final, final_val_loss=loss_final * 1.05,
                            final_test_loss=loss_final * 1.06, final_train_metric=final,
                            final_val_metric=final + rng.normal(0, 0.003),
                            final_test_metric=final + rng.normal(0, 0.003),
                            best_val_metric=final, best_val_step=steps,
                            steps_to_target=to_target, wall_seconds=float(rng.uniform(1, 30)),
                        )
                    elif status == "diverged":
                        row.update(diverged_at_step=diverged_at, wall_seconds=1.0)
                    else:
                        row.update(error="RuntimeError: synthetic failure")
                    rows.append(tuple(row[c] for c in RUN_COLUMNS))
                    if status == "failed":
                        continue
                    last = evals if diverged_at is None else evals[evals < diverged_at]
                    for i, step in enumerate(last):
                        step = int(step)
                        if step > 0:
                            curves.append((run_id, step, "train", float(loss_curve[i]), None, step / 100))
                        curves.append((run_id, step, "val", float(loss_curve[i] * 1.05), float(curve[i]), step / 100))
                        curves.append((run_id, step, "test", float(loss_curve[i] * 1.06), float(curve[i]), step / 100))
    with sqlite3.connect(path) as conn:
        placeholders = ",".join("?" * len(RUN_COLUMNS))
        conn.executemany(f"INSERT INTO runs ({','.join(RUN_COLUMNS)}) VALUES ({placeholders})", rows)
        conn.executemany(
            "INSERT INTO curve_points (run_id, step, split, loss, metric, elapsed) VALUES (?,?,?,?,?,?)",
            curves,
        )
    print(f"built {path}: {len(rows):,} runs, {len(curves):,} curve points, "
          f"{path.stat().st_size / 1e6:.0f} MB", file=sys.stderr)


def in_process(args: list[str]) -> float:
    """Seconds of one call of the real entry point in this (already started) process."""
    from adaptbench.cli import main

    started = time.perf_counter()
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        try:
            main(args)
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise RuntimeError(f"{args} exited with {exc.code}") from None
    return time.perf_counter() - started


def fresh_process(args: list[str]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (user + system) of `adaptbench ARGS` in a new process, end to
    end. On a busy machine the wall clock also counts waiting for a CPU; the CPU time does not."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", ENTRY, *args],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{args} exited with {proc.returncode}: {proc.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=Path("/tmp/adaptbench-100k.db"))
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="timings per command; the best is shown")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the database even if present")
    args = parser.parse_args()
    if args.rebuild and args.db.exists():
        for suffix in ("", "-wal", "-shm"):
            Path(f"{args.db}{suffix}").unlink(missing_ok=True)
    if not args.db.exists():
        started = time.perf_counter()
        build(args.db, args.runs)
        print(f"build took {time.perf_counter() - started:.0f} s", file=sys.stderr)
    os.environ["ADAPTBENCH_DB"] = str(args.db)
    with sqlite3.connect(args.db) as conn:
        n = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    print(f"{n:,} runs in {args.db}; best of {args.repeat}; --format csv to /dev/null; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'command':<45} {'new process s':>14} {'(CPU s)':>8} {'in process s':>13}")
    for command in COMMANDS:
        cmd = [*command, "--format", "csv"]
        fresh, cpu = min(fresh_process(cmd) for _ in range(args.repeat))
        warm = min(in_process(cmd) for _ in range(args.repeat))
        print(f"{'adaptbench ' + ' '.join(command):<45} {fresh:>14.2f} {cpu:>8.2f} {warm:>13.2f}",
              flush=True)


if __name__ == "__main__":
    main()
