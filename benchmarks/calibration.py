"""False-positive rate and power of `adaptbench report claims`, by simulation through the real code.

Each repetition writes a synthetic adaptive-lr study into a fresh SQLite results database with
the store's own code (`write_study`): the lr grids queued by `queue.enqueue` (2 lrs x 5
selection seeds, 10 evaluation seeds asked for), their outcomes and step-0 `train_full` curve
points stored as a worker stores them, the evaluation runs at the lr `protocol.choose_lr`
selects inserted as `evaluation.queue_due` inserts them, and theirs; then
`adaptbench report claims --format json` runs on it and the verdicts are counted.

The synthetic suite: 5 sparse tasks and their 5 dense twins (3 pairs measured by an accuracy, 2
by a log loss; the seed noise sd σ of the final metric is the claims' practical margin), the 5
optimizers, and the sparse tasks at 4x and 16x the default budget as well (claim (c)). A run's
final metric is level + shift·σ + N(0, σ²) (validation and test drawn apart); its steps to the
target 200 · speed · exp(N(0, 0.1²)), at a 5-step resolution; its final full-batch training
loss best + (initial - best) · (gap_b + N(0, 0.004²)) at budget b. The worse lr of each grid is
3σ lower, twice slower and twice the gap; 1% of runs diverge (so that an lr grid now and then
picks the worse lr: selection luck, which the tests must absorb). `SCENARIOS` set the shifts,
speeds and gaps; every claim is at its null in every scenario but the one it is the
alternative of.

With `--variants` each study also holds the robustness arm's variants at the default budget
(`--study adaptive-lr-robust`: every optimizer with warmup-cosine, adam and rmsprop with three
other eps, adagrad with another initial accumulator), each drawn as its plain optimizer is
unless the scenario's `variant_shift` says otherwise, and the verdicts are those of `report
claims --variants best` (each optimizer at its best variant per task, in (a) and (b)).

    python benchmarks/calibration.py                 # 200 repetitions of each scenario, 2 jobs
    python benchmarks/calibration.py --reps 50 --scenario equal --in-memory
    python benchmarks/calibration.py --variants      # the robustness arm, --variants best
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import math
import os
import sqlite3
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from adaptbench import evaluation, queue
from adaptbench.protocol import choose_lr
from adaptbench.spec import STUDY_PRESETS, Grid, RunSpec, evaluation_specs, expand, expand_study
from adaptbench.store import CurvePoint, Run, make_engine, write
from adaptbench.tasks import Task

OPTIMIZERS = ("adam", "rmsprop", "adagrad", "sgd", "momentum")
PAIRS = 5
LRS = (0.001, 0.01)  # 0.01 is the better lr of every grid
SEEDS, EVAL_SEEDS = 5, 10
STEPS, TARGET_STEPS, RESOLUTION = 500, 200, 5
SIGMA = {"accuracy": 0.01, "logloss": 0.009}  # = the claims' practical margin of each metric
LEVEL = {"accuracy": 0.85, "logloss": 0.45}
BEST_LOSS, INITIAL_LOSS, GAP_NOISE = 0.1, 2.3, 0.004
BASE_GAPS = (0.10, 0.03, 0.01)  # normalised gap at 1x, 4x, 16x the default budget
DIVERGE = 0.01


@dataclass(frozen=True)
class Scenario:
    """Effects on top of a suite where every optimizer is the same: metric shifts in σ (on
    every task, or only on the sparse ones), speed factors on steps to target, normalised gaps
    at 1x, 4x, 16x; `alternative`: the claims for which this is the alternative."""

    name: str
    text: str
    shift: dict[str, float] = field(default_factory=dict)
    sparse_shift: dict[str, float] = field(default_factory=dict)
    speed: dict[str, float] = field(default_factory=dict)
    gaps: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    alternative: str = ""
    variant_shift: dict[str, float] = field(default_factory=dict)  # by label, e.g. sgd+warmup-cosine
    variants_only: bool = False  # a scenario about the variants: measured with --variants only
    speed_correlation: float = 0.0  # of a run's validation noise with its (log) speed: rho > 0,
    # a lucky run is also fast (then a figure read on the seeds that chose it would be biased)


SCENARIOS = (
    Scenario("equal", "every optimizer the same in every respect"),
    Scenario("early-leader", "adagrad 0.05 ahead in normalised gap at 1x, tied at 16x; adam "
             "reaches the target 30% sooner; final metrics tied",
             speed={"adam": 0.7}, gaps={"adagrad": (0.05, 0.02, 0.01)}),
    Scenario("sparse-equals-dense", "rmsprop 1.5σ better than the others on every task, "
             "sparse and dense alike", shift={"rmsprop": 1.5}),
    Scenario("adam-second", "adam 2σ above sgd, momentum, adagrad but 3σ below rmsprop",
             shift={"adam": 2.0, "rmsprop": 5.0}),
    Scenario("adagrad-always-behind", "adagrad 0.03 behind in normalised gap at every budget",
             gaps={"adagrad": (0.13, 0.06, 0.04)}),
    Scenario("adam-best", "adam 2σ better than every other on every task and 30% sooner at "
             "the target", shift={"adam": 2.0}, speed={"adam": 0.7}, alternative="a"),
    Scenario("sparse-advantage", "rmsprop 2σ better than the others on the sparse tasks, "
             "the same on their dense twins", sparse_shift={"rmsprop": 2.0}, alternative="b"),
    Scenario("adagrad-stalls", "adagrad 0.05 ahead in normalised gap at 1x, 0.01 behind at "
             "4x, 0.04 behind at 16x", gaps={"adagrad": (0.05, 0.04, 0.05)}, alternative="c"),
)
ROBUST_RIVALS = ("rmsprop", "adagrad", "sgd", "momentum")
SCENARIOS += (
    Scenario("adam-best-untuned", "adam 2σ better than the other plain optimizers, each of "
             "which has a warmup-cosine variant 2σ better than itself: at their best variants "
             "all five are equal", shift={"adam": 2.0},
             variant_shift={f"{o}+warmup-cosine": 2.0 for o in ROBUST_RIVALS},
             variants_only=True),
    Scenario("adam-best-variant", "adam's warmup-cosine variant 2σ better than every other "
             "variant of every optimizer (adam's plain one included); every adam variant 30% "
             "sooner at the target", variant_shift={"adam+warmup-cosine": 2.0}, speed={"adam": 0.7},
             alternative="a", variants_only=True),
)
TIED = ("equal", "early-leader")  # every optimizer ends tied
PARTS = ("a/accuracy", "a/speed", "b/over sgd", "b/over momentum", "c/early", "c/late")


def _build(seed: int, device: object) -> None:  # the synthetic tasks are never trained
    raise RuntimeError("a synthetic task")


def suite() -> dict[str, Task]:
    tasks = {}
    for i in range(PAIRS):
        metric = "accuracy" if i % 2 == 0 else "logloss"
        common = dict(description="synthetic", build=_build, metric=metric,
                      higher_is_better=metric == "accuracy", steps=STEPS, batch_size=32,
                      eval_every=50, lrs=LRS, target=0.5)
        tasks[f"sparse-{i}"] = Task(name=f"sparse-{i}", task_type="sparse", twin=f"dense-{i}",
                                    **common)
        tasks[f"dense-{i}"] = Task(name=f"dense-{i}", task_type="dense", **common)
    return tasks


def label(spec: RunSpec) -> str:
    """The contender a spec belongs to, as reports name it (`protocol.variant_labels`)."""
    from adaptbench.protocol import _compact_params

    name = spec.optimizer + ("" if spec.schedule == "constant" else f"+{spec.schedule}")
    return name + (_compact_params(json.dumps(dict(spec.params))) if spec.params else "")


def _outcome(spec: RunSpec, task: Task, scenario: Scenario, rng: np.random.Generator) -> dict:
    """A finished run's outcome columns, and its step-0 training loss under "initial"."""
    opt, bad = spec.optimizer, spec.lr != LRS[-1]
    budget = spec.steps // STEPS
    initial = INITIAL_LOSS * math.exp(0.01 * rng.normal())
    if rng.random() < DIVERGE:
        return {"status": "diverged", "diverged_at_step": int(rng.integers(1, spec.steps)),
                "initial": initial}
    sigma = SIGMA[task.metric]
    shift = scenario.shift.get(opt, 0.0) + (scenario.sparse_shift.get(opt, 0.0)
                                             if task.task_type == "sparse" else 0.0)
    shift += scenario.variant_shift.get(label(spec), 0.0)
    shift -= 3.0 if bad else 0.0
    sign = 1.0 if task.higher_is_better else -1.0
    noise = rng.normal(size=2)
    val, test = (LEVEL[task.metric] + sign * shift * sigma + sigma * noise)
    rho = scenario.speed_correlation
    cost = TARGET_STEPS * scenario.speed.get(opt, 1.0) * (2.0 if bad else 1.0) * math.exp(
        0.1 * (math.sqrt(1.0 - rho * rho) * rng.normal() - rho * sign * noise[0]))
    reached = int(math.ceil(cost / RESOLUTION) * RESOLUTION)
    gap = scenario.gaps.get(opt, BASE_GAPS)[{1: 0, 4: 1, 16: 2}[budget]] * (2.0 if bad else 1.0)
    loss = BEST_LOSS + (INITIAL_LOSS - BEST_LOSS) * max(0.0, gap + GAP_NOISE * rng.normal())
    return {"status": "done", "final_val_metric": float(val), "final_test_metric": float(test),
            "final_train_loss": loss, "steps_to_target": reached if reached <= spec.steps else None,
            "best_val_metric": float(val), "initial": initial}


OUTCOME_COLUMNS = ("status", "final_val_metric", "final_test_metric", "final_train_loss",
                   "steps_to_target", "best_val_metric", "diverged_at_step")


@functools.cache
def selection_specs(variants: bool = False) -> tuple[RunSpec, ...]:
    """The study's lr grids: every task at its default budget, the sparse ones at 4x and 16x;
    with `variants`, the robustness arm's grids too (`--study adaptive-lr-robust`)."""
    tasks = suite()
    names = list(tasks)
    specs = expand(Grid(names, OPTIMIZERS, seeds=range(SEEDS), lr_grid=True,
                        study="adaptive-lr"), tasks)
    long = [n for n in names if n.startswith("sparse")]
    for budget in (4, 16):
        specs += expand(Grid(long, OPTIMIZERS, seeds=range(SEEDS), lr_grid=True,
                             study="adaptive-lr", budget=budget), tasks)
    if variants:
        robust = STUDY_PRESETS["adaptive-lr-robust"]
        specs += expand_study(Grid(names, OPTIMIZERS, seeds=range(SEEDS), lr_grid=True,
                                   study=robust.name), robust, tasks)
    return tuple(specs)


def study(scenario: Scenario, seed: int, variants: bool = False) -> list[tuple[RunSpec, dict]]:
    """Every run of one synthetic study with its outcome: the lr grids, then the evaluation
    seeds of each grid at the lr the protocol selects (`protocol.choose_lr`, which is what
    `evaluation.queue_due` asks when a grid's last run finishes)."""
    rng = np.random.default_rng(seed)
    tasks = suite()
    grid = [(s, _outcome(s, tasks[s.task], scenario, rng)) for s in selection_specs(variants)]
    frame = pd.DataFrame([{
        "task": s.task, "optimizer": f"{label(s)}@{s.steps}", "lr": s.lr,
        "status": o["status"], "final_val_metric": o.get("final_val_metric"),
        "higher_is_better": tasks[s.task].higher_is_better,
        "task_type": tasks[s.task].task_type} for s, o in grid])
    best, _ = choose_lr(frame)
    chosen = {(b.task, b.optimizer): b.lr for b in best.itertuples() if not b.all_diverged}
    first = {(s.task, f"{label(s)}@{s.steps}"): s for s, _ in grid}
    evaluations = [(e, _outcome(e, tasks[e.task], scenario, rng))
                   for key, s in first.items() if key in chosen
                   for e in evaluation_specs(s, chosen[key], EVAL_SEEDS)]
    return grid + evaluations


def frames(scenario: Scenario, seed: int,
           variants: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`study` as the reports load it, without a database: the runs (the columns `report
    claims` reads) and the step-0 curve points."""
    tasks = suite()
    rows, points = [], []
    for i, (s, o) in enumerate(study(scenario, seed, variants), start=1):
        t = tasks[s.task]
        rows.append({
            "id": i, "task": s.task, "task_type": t.task_type, "metric_name": t.metric,
            "higher_is_better": t.higher_is_better, "optimizer": s.optimizer, "lr": s.lr,
            "seed": s.seed, "schedule": s.schedule,
            "params": json.dumps(dict(s.params), sort_keys=True), "steps": s.steps,
            "batch_size": s.batch_size, "study": s.study, "role": s.role, "fingerprint": None,
            "task_steps": float(t.steps), "task_batch_size": float(t.batch_size),
            "task_twin": t.twin, "task_held_out": True, "task_claims": True,
            "target": t.target, "final_train_metric": np.nan,
            **{c: o.get(c) for c in OUTCOME_COLUMNS}})
        points.append({"run_id": i, "step": 0, "split": "train_full", "loss": o["initial"]})
    runs = pd.DataFrame(rows)
    for c in ("final_val_metric", "final_test_metric", "final_train_loss", "steps_to_target",
              "best_val_metric", "diverged_at_step"):
        runs[c] = runs[c].astype(float)
    return runs, pd.DataFrame(points)


@functools.cache
def _template(folder: str, variants: bool = False) -> str:
    """A database holding the study's queued lr grids (`queue.enqueue`), made once."""
    path = str(Path(folder) / f"template{'-variants' if variants else ''}.db")
    engine = make_engine(path)
    queue.enqueue(engine, selection_specs(variants), suite(), eval_seeds=EVAL_SEEDS)
    engine.dispose()
    return path


def write_study(path: str, scenario: Scenario, seed: int, folder: str,
                variants: bool = False) -> None:
    """`study` stored in a new SQLite database at `path` by the store's own code: the queued
    lr grids (`queue.enqueue`, copied from a template), their outcomes and step-0 curve points
    (the columns `queue.finish` writes), the evaluation runs (`queue.insert_specs` with
    `evaluation`'s task facts, as `evaluation.queue_due` inserts them) and theirs."""
    with sqlite3.connect(_template(folder, variants)) as source, sqlite3.connect(path) as copy:
        source.backup(copy)
    runs = study(scenario, seed, variants)
    table = Run.__table__
    engine = make_engine(path)
    with write(engine) as conn:
        ids = dict(conn.execute(sa.select(Run.spec_hash, Run.id)).all())
        facts = {}
        for row in conn.execute(sa.select(Run)).all():
            facts.setdefault((row.task, row.optimizer, row.steps, row.study),
                             evaluation._meta(row))
        fresh = [s for s, _ in runs if s.spec_hash not in ids]
        for key in dict.fromkeys((s.task, s.optimizer, s.steps, s.study) for s in fresh):
            queue.insert_specs(conn, [s for s in fresh
                                      if (s.task, s.optimizer, s.steps, s.study) == key],
                               facts[key])
        ids = dict(conn.execute(sa.select(Run.spec_hash, Run.id)).all())
        conn.execute(table.update().where(table.c.id == sa.bindparam("b_id")).values(
            **{c: sa.bindparam(f"b_{c}") for c in OUTCOME_COLUMNS}, attempts=1),
            [{"b_id": ids[s.spec_hash], **{f"b_{c}": o.get(c) for c in OUTCOME_COLUMNS}}
             for s, o in runs])
        conn.execute(sa.insert(CurvePoint), [
            {"run_id": ids[s.spec_hash], "step": 0, "split": "train_full", "loss": o["initial"],
             "metric": None, "elapsed": 0.0} for s, o in runs])
    engine.dispose()


def report(path: str, variants: bool = False) -> dict:
    """`adaptbench report claims --format json` on the database (with `--variants best`), parsed."""
    from adaptbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(["report", "claims", "--db", path, "--format", "json",
                  *(["--variants", "best"] if variants else [])])
        except SystemExit as exc:
            if exc.code:
                raise RuntimeError(f"report claims failed: {err.getvalue()}") from None
    return json.loads(out.getvalue())


def _verdicts(got: dict) -> dict[str, str]:
    row = {c["claim"]: c["verdict"] for c in got["claims"]}
    for s in got["statistics"]:
        if s["verdict"] != "context":
            row[f"{s['claim']}/{s['part']}"] = s["verdict"]
    return row


def verdicts(scenario: Scenario, reps: int, seed: int, in_memory: bool = False,
             variants: bool = False) -> list[dict]:
    """Per repetition: each claim's verdict and each part's (`PARTS`), from `report claims`
    on the study's database, or (`in_memory`) from `claims.check` on `frames` of it."""
    from adaptbench import claims, protocol

    out = []
    with tempfile.TemporaryDirectory() as folder:
        for rep in range(reps):
            if in_memory:
                runs, points = frames(scenario, seed * 1_000_003 + rep, variants)
                v, st, _ = claims.check(protocol.select(runs).runs, points, "test",
                                        protocol.select(runs, "fixed").runs,
                                        "best" if variants else "plain")
                out.append(_verdicts({"claims": v.to_dict("records"),
                                      "statistics": st.to_dict("records")}))
                continue
            path = str(Path(folder) / f"study-{rep}.db")
            write_study(path, scenario, seed * 1_000_003 + rep, folder, variants)
            out.append(_verdicts(report(path, variants)))
            for suffix in ("", "-wal", "-shm"):
                Path(path + suffix).unlink(missing_ok=True)
    return out


def _job(args: tuple[Scenario, int, int, bool, bool]) -> list[dict[str, str]]:
    scenario, reps, seed, in_memory, variants = args
    return verdicts(scenario, reps, seed, in_memory, variants)


def rates(rows: list[dict[str, str]], keys: tuple[str, ...]) -> dict[str, float]:
    """The share of repetitions in which each claim or part was SUPPORTED."""
    return {k: float(np.mean([r.get(k) == "supported" for r in rows])) for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200, help="repetitions per scenario")
    parser.add_argument("--jobs", type=int, default=2, help="processes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scenario", action="append", choices=[s.name for s in SCENARIOS],
                        help="only these (repeatable)")
    parser.add_argument("--in-memory", action="store_true",
                        help="skip the database: `claims.check` on the same studies as frames "
                             "(the same verdicts, several times faster; for exploring)")
    parser.add_argument("--variants", action="store_true",
                        help="add the robustness arm's variants to every study and read it with "
                             "`report claims --variants best`")
    parser.add_argument("--speed-correlation", type=float, default=0.0, metavar="RHO",
                        help="correlation of each run's validation noise with its speed (a "
                             "lucky run is also fast); default 0")
    args = parser.parse_args()
    if not 0.0 <= args.speed_correlation < 1.0:
        parser.error("--speed-correlation must be in [0, 1)")
    scenarios = [replace(s, speed_correlation=args.speed_correlation) for s in SCENARIOS]
    chosen = [i for i, s in enumerate(SCENARIOS) if (not args.scenario or s.name in args.scenario)
              and (args.variants or not s.variants_only)]
    start = time.perf_counter()
    jobs = max(1, args.jobs)
    chunks = [(scenarios[i], args.reps // jobs + (j < args.reps % jobs),
               args.seed * 100 + 10 * i + j, args.in_memory, args.variants)
              for i in chosen for j in range(jobs)]
    if jobs > 1:
        from multiprocessing import get_context

        with get_context("spawn").Pool(jobs) as pool:
            results = pool.map(_job, chunks)
    else:
        results = [_job(c) for c in chunks]
    rows: dict[int, list] = {i: [] for i in chosen}
    for (scenario, *_), got in zip(chunks, results):
        rows[SCENARIOS.index(replace(scenario, speed_correlation=0.0))] += got
    how = "`claims.check` on in-memory studies" if args.in_memory else (
        "`adaptbench report claims` on studies written to SQLite")
    if args.variants:
        how += ", with the robustness arm's variants, read with --variants best"
    if args.speed_correlation:
        how += f", speed correlated with the validation noise (rho = {args.speed_correlation:g})"
    print(f"{how}, {args.reps} repetitions per scenario: the share of repetitions with the "
          f"verdict SUPPORTED (null: a false-positive rate, target <= 0.05; alt: power); "
          f"'tied' (in the scenarios where every optimizer ends tied): (b), (c) or (a)'s "
          f"accuracy part supported\n")
    parts = [p.replace("/", ":") for p in PARTS]
    print(f"{'scenario':<22} {'(a)':>10} {'(b)':>10} {'(c)':>10} {'tied':>6}  "
          + " ".join(f"{p:>15}" for p in parts))
    for i in chosen:
        s, got = SCENARIOS[i], rows[i]
        claims = rates(got, ("a", "b", "c"))
        part = rates(got, PARTS)
        tied = np.mean([any(r.get(k) == "supported" for k in ("b", "c", "a/accuracy"))
                        for r in got])
        tied = f"{tied:.3f}" if s.name in TIED else "-"
        cells = [f"{claims[c]:.3f} {'alt' if c in s.alternative else 'null'}" for c in "abc"]
        print(f"{s.name:<22} " + " ".join(f"{c:>10}" for c in cells) + f" {tied:>6}  "
              + " ".join(f"{part[p]:>15.3f}" for p in PARTS))
    print()
    for i in chosen:
        print(f"{SCENARIOS[i].name}: {SCENARIOS[i].text}")
    print(f"\n({time.perf_counter() - start:.0f} s; family-wise α = 0.05, Holm over the 6 parts; "
          f"a rate p over n repetitions has standard error sqrt(p (1 - p) / n))")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
