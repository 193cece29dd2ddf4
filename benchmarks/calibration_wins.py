"""False-positive rate and power of the win-rate verdicts, by simulation through the real code.

A win-rate interval is read as a verdict ("A beats B") when its lower bound exceeds ½ (one-sided,
2.5% nominal). Each simulated study draws, for every task, a task level and for every seed a
score per optimizer: level + shift_o + N(0, 1); A and B have the same distribution under the
null (shift 0) and A is `--shift` sd better under the alternative. Each study goes through
`protocol.select` and `comparisons.win_rates`, as `adaptbench report wins` does, and the share
of studies whose interval clears ½ is printed for each number of tasks.

    python benchmarks/calibration_wins.py            # 300 studies per cell, ~1 minute
    python benchmarks/calibration_wins.py --studies 1000 --seeds 10 --shift 0.5
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import pandas as pd

from adaptbench import comparisons, protocol


def study(rng: np.random.Generator, tasks: int, seeds: int, shift: float) -> pd.DataFrame:
    rows = []
    for t in range(tasks):
        level = rng.normal()
        for name, s in (("a", shift), ("b", 0.0)):
            for seed in range(seeds):
                v = level + s + rng.normal()
                rows.append({"task": f"t{t}", "task_type": "sparse", "optimizer": name,
                             "lr": 0.1, "seed": seed, "status": "done", "higher_is_better": True,
                             "metric_name": "accuracy", "final_val_metric": v,
                             "final_test_metric": level + s + rng.normal(),
                             "schedule": "constant", "params": "{}", "steps": 100,
                             "batch_size": 32, "study": ""})
    df = pd.DataFrame(rows)
    df["id"] = range(1, len(df) + 1)
    return df


def rejection_rate(studies: int, tasks: int, seeds: int, shift: float, seed: int) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(studies):
        rates = comparisons.win_rates(protocol.select(study(rng, tasks, seeds, shift)).runs)
        row = rates[(rates["optimizer"] == "a") & (rates["opponent"] == "b")].iloc[0]
        hits += bool(row["ci_low"] > 0.5)
    return hits / studies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--shift", type=float, default=0.5, help="A's advantage in sd, for power")
    args = parser.parse_args()
    print(f"win-rate verdict 'A beats B' (95% interval's lower bound > 1/2), {args.seeds} seeds "
          f"per task, {args.studies} simulated studies per cell")
    print(f"{'tasks':>5}  {'false positives (shift 0)':>26}  {'power (shift ' + str(args.shift) + ' sd)':>22}")
    start = time.perf_counter()
    for tasks in (1, 2, 5, 11):
        fp = rejection_rate(args.studies, tasks, args.seeds, 0.0, 1000 + tasks)
        power = rejection_rate(args.studies, tasks, args.seeds, args.shift, 2000 + tasks)
        se = math.sqrt(fp * (1 - fp) / args.studies) if 0 < fp < 1 else 1 / args.studies
        print(f"{tasks:>5}  {fp:>19.3f} ± {se:.3f}  {power:>22.3f}")
    print(f"({time.perf_counter() - start:.0f} s; nominal false-positive rate 0.025)")


if __name__ == "__main__":
    main()
