"""Tune every built-in task's lr grid for the claims optimizers, and derive its target.

For each task, each optimizer (adam, rmsprop, adagrad, sgd, momentum), each lr of the task's
grid and each seed 0..S-1, one run at the task's default budget (or ``--budget`` times it)
through `adaptbench.train.execute`, the code path a worker runs. Per (task, optimizer):

- the mean final validation metric per lr (a diverged run counts as the worst metric any run of
  the task reached), the best lr, and whether it is at an edge of the grid;
- at the best lr: the mean final test metric, and its seed-to-seed standard deviation.

Per task:

- ``metric_se``: the standard error of the test metric over the test examples, by batch means
  (the test split of seed 0, cut into 20 equal contiguous chunks of its random order; sd of
  the chunk means / sqrt(20)), measured on adam's tuned run;
- ``typical_difference``: the median over optimizer pairs of the absolute difference of their
  tuned mean test metrics;
- ``target``: the rule below applied to the tuned baselines.

Target rule (after AlgoPerf, which sets targets from tuned baselines): the median over the five
tuned optimizers of the mean final validation metric at their best lr, at the default budget,
rounded to 3 significant digits towards the easier side -- a level about half of the tuned
baselines reach within the budget, so time-to-target separates fast from slow optimizers.

    python benchmarks/tuning.py --tasks sparse-text --seeds 2 --workers 2
    python benchmarks/tuning.py --json            # all tasks; writes builtin_tasks/tuning.json

Runs on one CPU thread per worker process.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

OPTIMIZERS = ("adam", "rmsprop", "adagrad", "sgd", "momentum")
DEFAULT_JSON = Path(__file__).resolve().parent.parent / "adaptbench" / "builtin_tasks" / "tuning.json"
CHUNKS = 20


def _one(job: tuple[str, str, float, int, int, bool]) -> dict[str, Any]:
    import torch

    from adaptbench.spec import RunSpec
    from adaptbench.tasks import load_tasks
    from adaptbench.train import execute

    torch.set_num_threads(1)
    name, opt, lr, seed, steps, measure_se = job
    task = load_tasks()[name]
    chunks: list[float] = []

    def chunk_means(problem: Any) -> None:
        x, y = problem.test
        n = x.shape[0] // CHUNKS * CHUNKS
        problem.model.eval()
        with torch.no_grad():
            for i in range(CHUNKS):
                part = slice(i * n // CHUNKS, (i + 1) * n // CHUNKS)
                chunks.append(float(problem.metric(problem.model(x[part]), y[part])))

    spec = RunSpec(name, opt, lr, seed, steps, task.batch_size)
    result = execute(spec, task, torch.device("cpu"), on_finish=chunk_means if measure_se else None)
    return {"task": name, "optimizer": opt, "lr": lr, "seed": seed, "status": result.status,
            "val": result.final["final_val_metric"], "test": result.final["final_test_metric"],
            "seconds": result.wall_seconds, "chunks": chunks}


def round_towards_easy(value: float, higher_is_better: bool) -> float:
    """``value`` to 3 significant digits, rounded down if higher is better, else up."""
    if value == 0 or not math.isfinite(value):
        return value
    scale = 10 ** (math.floor(math.log10(abs(value))) - 2)
    q = value / scale
    return (math.floor(q + 1e-9) if higher_is_better else math.ceil(q - 1e-9)) * scale


def summarise(task: Any, rows: list[dict[str, Any]], optimizers: list[str]) -> dict[str, Any]:
    better = max if task.higher_is_better else min
    worse = min if task.higher_is_better else max
    finite = [r["val"] for r in rows if r["val"] is not None]
    worst = worse(finite) if finite else math.nan
    out: dict[str, Any] = {"optimizers": {}}
    tuned_val, tuned_test = {}, {}
    for opt in optimizers:
        mine = [r for r in rows if r["optimizer"] == opt]
        per_lr = {}
        for lr in sorted({r["lr"] for r in mine}):
            vals = [r["val"] if r["val"] is not None else worst for r in mine if r["lr"] == lr]
            per_lr[lr] = statistics.mean(vals)
        best_lr = better(per_lr, key=per_lr.get)
        at_best = [r for r in mine if r["lr"] == best_lr]
        tests = [r["test"] for r in at_best if r["test"] is not None]
        grid = sorted(per_lr)
        edge = "low" if best_lr == grid[0] else "high" if best_lr == grid[-1] else ""
        tuned_val[opt] = per_lr[best_lr]
        tuned_test[opt] = statistics.mean(tests) if tests else math.nan
        out["optimizers"][opt] = {
            "best_lr": best_lr, "edge": edge, "val_at_best": per_lr[best_lr],
            "test_at_best": tuned_test[opt],
            "test_seed_sd": statistics.stdev(tests) if len(tests) > 1 else None,
            "diverged": sum(r["status"] != "done" for r in mine), "runs": len(mine),
            "val_per_lr": {f"{lr:g}": v for lr, v in per_lr.items()},
        }
    adam = out["optimizers"].get("adam")
    chunks = [r["chunks"] for r in rows if r["chunks"] and adam and r["lr"] == adam["best_lr"]]
    if chunks:
        out["metric_se"] = statistics.stdev(chunks[0]) / math.sqrt(len(chunks[0]))
    diffs = [abs(tuned_test[a] - tuned_test[b]) for a, b in itertools.combinations(optimizers, 2)
             if math.isfinite(tuned_test[a]) and math.isfinite(tuned_test[b])]
    out["typical_difference"] = statistics.median(diffs) if diffs else None
    out["target"] = round_towards_easy(statistics.median(tuned_val.values()), task.higher_is_better)
    out["seconds_per_run"] = statistics.mean(r["seconds"] for r in rows)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="", help="comma-separated task names (default: every "
                        "task in the claims)")
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=1, help="multiple of the default steps")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", nargs="?", const=str(DEFAULT_JSON), default=None)
    args = parser.parse_args(argv)

    from adaptbench.tasks import load_tasks

    tasks = load_tasks()
    names = [n.strip() for n in args.tasks.split(",") if n.strip()] or sorted(
        n for n, t in tasks.items() if t.claims)
    optimizers = [o.strip() for o in args.optimizers.split(",") if o.strip()]
    jobs = [(n, o, float(lr), s, tasks[n].steps * args.budget, s == 0 and o == "adam")
            for n in names for o in optimizers for lr in tasks[n].lrs for s in range(args.seeds)]
    print(f"# {len(jobs)} runs, {args.workers} worker(s), budget {args.budget}x", file=sys.stderr)
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(_one, jobs, chunksize=1))
    report: dict[str, Any] = {}
    for name in names:
        task = tasks[name]
        info = summarise(task, [r for r in rows if r["task"] == name], optimizers)
        report[name] = info
        print(f"\n{name}: target {info['target']:g} ({task.metric}, "
              f"{'higher' if task.higher_is_better else 'lower'} is better; current "
              f"{task.target}), metric SE {info.get('metric_se', math.nan):.4g}, typical "
              f"optimizer difference {info['typical_difference']:.4g}, "
              f"{info['seconds_per_run']:.2f} s/run")
        for opt, o in info["optimizers"].items():
            print(f"  {opt:9} best lr {o['best_lr']:<8g}{'EDGE-' + o['edge'] if o['edge'] else '':10}"
                  f" val {o['val_at_best']:.4f} test {o['test_at_best']:.4f} "
                  f"diverged {o['diverged']}/{o['runs']}  " +
                  " ".join(f"{k}:{v:.3f}" for k, v in o["val_per_lr"].items()))
    print(f"\n# {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if args.json:
        path = Path(args.json)
        old = json.loads(path.read_text()) if path.exists() else {}
        key = "default" if args.budget == 1 else f"{args.budget}x"
        old.setdefault(key, {}).update(report)
        old["rule"] = ("target: the median over the tuned optimizers (adam, rmsprop, adagrad, sgd, "
                       "momentum) of the mean final validation metric at their best lr, default "
                       "budget, rounded to 3 significant digits towards the easier side")
        old["seeds"] = args.seeds
        path.write_text(json.dumps(old, indent=1, sort_keys=True) + "\n")
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
