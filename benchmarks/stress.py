"""Stress the run queue: K workers drain N tiny runs while random workers are killed with SIGKILL.

Every run must end done exactly once. The script prints
  lost        runs that did not end done (failed, e.g. after too many killed attempts, or cancelled)
  duplicated  runs whose result was stored more than once (reported done by two workers, or a
              curve point stored twice)
  stuck       runs still queued or running when the drain deadline passed
and, for information, how many runs were trained again after their worker was killed mid-run.
Exit status 1 if any of the three counts is not zero.

Workers are real `adaptbench worker --wait` processes on the `tiny` task of
tests/fixtures/tasks (5 steps of --step-sleep seconds each, so kills land mid-run). A killed
worker is replaced at once; its run comes back to the queue when its lease expires.

  python benchmarks/stress.py --workers 8 --runs 2000                 # SQLite file in a temp folder
  python benchmarks/stress.py --workers 8 --runs 2000 --postgres      # temporary PostgreSQL server
  python benchmarks/stress.py --db postgresql+psycopg://u@host/empty  # an existing, empty database

Measured on a 2-core machine (shared with other jobs), K = 8, N = 2,000, lease 3 s:
  SQLite,        a kill every 3 s:  14 SIGKILLs, 0 lost, 0 duplicated, 0 stuck, 58 s
  PostgreSQL 15, a kill every 3 s:  21 SIGKILLs, 0 lost, 0 duplicated, 0 stuck, 78 s
  SQLite,        a kill every 1 s: 514 SIGKILLs, 0 lost, 0 duplicated, 0 stuck, 556 s
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
TASKS = REPO / "tests" / "fixtures" / "tasks"


def pgserver():  # type: ignore[no-untyped-def]
    """tests/fixtures/pgserver.py: a throwaway PostgreSQL server on loopback."""
    spec = importlib.util.spec_from_file_location("pgserver", REPO / "tests" / "fixtures" / "pgserver.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def temp_postgres(durable: bool = False):  # type: ignore[no-untyped-def]
    return pgserver().TempPostgres(durable=durable)


class Pool:
    """K worker processes, replaced as they are killed; each logs to its own file."""

    def __init__(self, url: str, folder: Path, lease: float, step_sleep: float) -> None:
        self.url, self.folder, self.lease = url, folder, lease
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTBENCH_")}
        self.env.update(ADAPTBENCH_TEST_LOG=str(folder / "starts.log"),
                        ADAPTBENCH_TEST_STEP_SLEEP=str(step_sleep))
        self.live: list[subprocess.Popen] = []
        self.started = 0

    def spawn(self) -> None:
        log = open(self.folder / f"worker{self.started}.log", "wb")
        self.started += 1
        self.live.append(subprocess.Popen(
            [sys.executable, "-m", "adaptbench", "worker", "--wait", "--lease", str(self.lease),
             "--tasks-dir", str(TASKS), "--db", self.url],
            stdout=subprocess.DEVNULL, stderr=log, env=self.env,
        ))

    def kill_one(self, rng: random.Random) -> None:
        victim = self.live.pop(rng.randrange(len(self.live)))
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        self.spawn()

    def stop(self) -> None:
        for p in self.live:
            p.send_signal(signal.SIGTERM)
        for p in self.live:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()

    def logs(self) -> str:
        return "".join((self.folder / f"worker{i}.log").read_text(errors="replace") for i in range(self.started))


def counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT status, count(*) FROM runs GROUP BY status")).all())


def stress(url: str, folder: Path, args: argparse.Namespace) -> int:
    from adaptbench.store import make_engine

    rng = random.Random(args.seed)
    queued = subprocess.run(
        [sys.executable, "-m", "adaptbench.cli", "queue", "-t", "tiny", "-o", "sgd", "--seeds",
         str(args.runs), "--tasks-dir", str(TASKS), "--db", url],
        capture_output=True, text=True,
    )
    if queued.returncode != 0:
        sys.exit(f"queueing failed: {queued.stderr}")
    engine = make_engine(url, create=False)
    pool = Pool(url, folder, args.lease, args.step_sleep)
    started = time.monotonic()
    for _ in range(args.workers):
        pool.spawn()
    kills = 0
    next_kill = started + rng.expovariate(1 / args.kill_every)
    deadline = started + args.timeout
    try:
        while time.monotonic() < deadline:
            c = counts(engine)
            if not c.get("queued") and not c.get("running"):
                break
            if time.monotonic() >= next_kill and c.get("queued", 0) > args.workers:
                pool.kill_one(rng)
                kills += 1
                next_kill = time.monotonic() + rng.expovariate(1 / args.kill_every)
            time.sleep(0.2)
        wall = time.monotonic() - started
    finally:
        pool.stop()

    with engine.connect() as conn:
        statuses = dict(conn.execute(sa.text("SELECT id, status FROM runs")).all())
        dup_points = conn.execute(sa.text(
            "SELECT count(*) FROM (SELECT run_id FROM curve_points GROUP BY run_id, step, split "
            "HAVING count(*) > 1) AS d")).scalar_one()
    logs = pool.logs()
    done_reports = collections.Counter(re.findall(r"^run (\d+) done:", logs, re.M))
    starts_file = folder / "starts.log"
    starts = collections.Counter(line.split()[0] for line in starts_file.read_text().splitlines()) \
        if starts_file.exists() else collections.Counter()
    by_status = collections.Counter(statuses.values())
    stuck = by_status["queued"] + by_status["running"]
    lost = args.runs - by_status["done"] - stuck
    duplicated = len({r for r, n in done_reports.items() if n > 1}) + dup_points
    rerun = sum(1 for n in starts.values() if n > 1)
    engine_name = url.split(":", 1)[0]
    print(f"adaptbench stress: {engine_name}, {args.workers} workers, {args.runs} runs, {kills} SIGKILLs, "
          f"lease {args.lease:g} s, {args.step_sleep:g} s per step")
    print(f"  lost {lost}   duplicated {duplicated}   stuck {stuck}   (done {by_status['done']})")
    print(f"  trained again after a kill: {rerun} runs; wall {wall:.1f} s ({by_status['done'] / wall:.1f} runs/s)")
    print(f"  'database is locked' lines: {logs.count('database is locked')}; "
          f"tracebacks: {logs.count('Traceback')}; statuses: {dict(by_status)}")
    return 1 if lost or duplicated or stuck else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", "-k", type=int, default=8)
    parser.add_argument("--runs", "-n", type=int, default=2000)
    parser.add_argument("--kill-every", type=float, default=3.0, help="mean seconds between SIGKILLs")
    parser.add_argument("--lease", type=float, default=3.0)
    parser.add_argument("--step-sleep", type=float, default=0.01, help="seconds per training step")
    parser.add_argument("--timeout", type=float, default=1800, help="give up draining after this")
    parser.add_argument("--seed", type=int, default=0)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--postgres", action="store_true", help="start a temporary PostgreSQL server")
    where.add_argument("--db", help="an existing, empty database URL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="adaptbench-stress-") as tmp:
        folder = Path(tmp)
        if args.postgres:
            with temp_postgres() as pg:
                code = stress(pg.create_database("stress"), folder, args)
        else:
            code = stress(args.db or f"sqlite:///{folder / 'stress.db'}", folder, args)
    sys.exit(code)


if __name__ == "__main__":
    main()
