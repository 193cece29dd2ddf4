"""Chaos for the run queue: kill storms, paused workers, a database restart and an outage, on
SQLite and PostgreSQL. Every run must end done exactly once, and no worker may die of it.

For each engine, K `adaptbench worker --wait` processes (benchmarks/stress.py's pool, on the
`tiny` task of tests/fixtures/tasks) drain N runs while this script, within --seconds:
  kills       a SIGKILL every --kill-every s on average (while the database is up), and two
              storms that SIGKILL half the workers at once (each killed worker is replaced at once)
  pause       SIGSTOP a worker holding a run for three leases, then SIGCONT: the run is reaped
              and trained again elsewhere; the worker's own result, when it wakes, must be
              refused, not stored twice
  restart     PostgreSQL stopped in immediate mode (a crash) and started again at once (the
              server commits durably here: a crash of a server with synchronous_commit=off, as
              the tests run it, loses acknowledged commits, and so stores a run twice); SQLite
              has no server to restart
  outage      PostgreSQL stopped for --outage s; on SQLite, the write lock held for --outage s,
              past the workers' busy timeout (ADAPTBENCH_BUSY_TIMEOUT=2 here)
The restart and the outage wait until half the workers are training, and no worker is killed
while the database is away.
(counted from the moment the workers have finished their first runs), then waits up to --drain s
for the queue to empty, and stops the workers with SIGTERM.
It prints, per engine, runs, kills, lost (not done), duplicated (a result stored or reported
twice), stuck (still queued or running at the end) and worker deaths (a worker that exited
without being killed here, or stopped with an exit code other than 130), and exits 1 if any of
the last four is not zero. Loopback only: an SQLite file in a temporary folder and a temporary
PostgreSQL server (skipped, with a message, when its binaries are not installed: .ci/postgres.sh).

  python benchmarks/chaos.py                       # both engines, a minute or two each
  python benchmarks/chaos.py --engine sqlite --seconds 30

Measured on a 2-core machine shared with other jobs, K = 6, N = 400, lease 3 s, defaults
(`python benchmarks/chaos.py`, both engines in about 5 minutes; wall time from the first fault):
  SQLite:        9 SIGKILLs, 1 SIGSTOP, the write lock held 10 s; 0 lost, 0 duplicated, 0 stuck,
                 0 worker deaths; 2 results refused to a lapsed claim; 59 s
  PostgreSQL 15: 6 SIGKILLs, 1 SIGSTOP, a crash, a 10 s outage; 0 lost, 0 duplicated, 0 stuck,
                 0 worker deaths; 1 result refused to a lapsed claim; 75 s
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stress  # noqa: E402  (benchmarks/stress.py: the worker pool and the PostgreSQL server)

LOCKED_BUSY_TIMEOUT = "2"  # seconds: SQLite workers meet a held write lock as an outage


def _handles_sigterm(p: subprocess.Popen) -> bool:
    """Whether the process has installed a SIGTERM handler (Linux: /proc/PID/status SigCgt);
    True when that cannot be read (an exited process, another system)."""
    try:
        status = Path(f"/proc/{p.pid}/status").read_text()
    except OSError:
        return True
    caught = next((line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), None)
    return caught is None or bool(int(caught, 16) & (1 << (signal.SIGTERM - 1)))


class Chaos:
    """One engine's run: the pool, the schedule of faults, and what was seen."""

    def __init__(self, url: str, folder: Path, args: argparse.Namespace, server: Any = None) -> None:
        self.url, self.folder, self.args, self.server = url, folder, args, server
        self.rng = random.Random(args.seed)
        self.pool = stress.Pool(url, folder, args.lease, args.step_sleep)
        if server is None:
            self.pool.env["ADAPTBENCH_BUSY_TIMEOUT"] = LOCKED_BUSY_TIMEOUT
        self.kills = self.pauses = self.deaths = 0
        self.events: list[str] = []
        self.killed: set[int] = set()

    # -- faults ------------------------------------------------------------------------------

    def kill_one(self, spare: subprocess.Popen | None = None) -> None:
        candidates = [p for p in self.pool.live if p is not spare]
        victim = candidates[self.rng.randrange(len(candidates))]
        self.killed.add(victim.pid)
        self.pool.live.remove(victim)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        self.pool.spawn()
        self.kills += 1

    def storm(self) -> None:
        n = max(1, len(self.pool.live) // 2)
        for _ in range(n):
            self.kill_one()
        self.events.append(f"kill storm ({n})")

    def pause(self, engine: sa.Engine) -> None:
        """SIGSTOP a worker that holds a run (any worker if none does yet) for three leases."""
        with engine.connect() as conn:
            holders = {int(w.split(":")[1]) for (w,) in conn.execute(
                sa.text("SELECT worker FROM runs WHERE status = 'running'")) if w}
        candidates = [p for p in self.pool.live if p.pid in holders] or self.pool.live
        victim = candidates[self.rng.randrange(len(candidates))]
        seconds = 3 * self.args.lease
        victim.send_signal(signal.SIGSTOP)
        self._wait(seconds, spare=victim)
        victim.send_signal(signal.SIGCONT)
        self._wait(self.args.lease, spare=victim)  # it wakes, and finds its run taken over
        self.pauses += 1
        whose = "a worker holding a run" if victim.pid in holders else "an idle worker"
        self.events.append(f"SIGSTOP {seconds:g} s of {whose}")

    def busy(self, engine: sa.Engine) -> None:
        """Wait, killing no one, until half the workers train (up to a minute): the next fault
        must meet workers at work, not starting up after a storm."""
        end = time.monotonic() + 60
        while stress.counts(engine).get("running", 0) < max(1, len(self.pool.live) // 2):
            if time.monotonic() > end:
                return
            self._wait(0.5, kills=False)

    def restart(self) -> None:
        if self.server is None:
            self.events.append("no server to restart")
            return
        self.server.stop_server("immediate")
        self.server.start_server()
        self.events.append("restart")

    def outage(self) -> None:
        seconds = self.args.outage
        if self.server is None:  # hold SQLite's write lock past the workers' busy timeout
            conn = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")
            self._wait(seconds, kills=False)
            conn.execute("ROLLBACK")
            conn.close()
            self.events.append(f"write lock held {seconds:g} s")
            return
        self.server.stop_server("fast")
        try:
            self._wait(seconds, kills=False)
        finally:
            self.server.start_server()
        self.events.append(f"outage {seconds:g} s")

    # -- the run -----------------------------------------------------------------------------

    def _wait(self, seconds: float, spare: subprocess.Popen | None = None,
              kills: bool = True) -> None:
        """Sleep, killing one worker now and then as in stress.py (never `spare`), and noticing
        deaths."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.check_deaths()
            if kills and self.rng.random() < 0.2 / self.args.kill_every:
                self.kill_one(spare)
            time.sleep(0.2)

    def check_deaths(self) -> None:
        for p in list(self.pool.live):
            if p.poll() is not None:  # exited on its own: a worker died of the chaos
                self.deaths += 1
                self.pool.live.remove(p)
                self.events.append(f"worker death (exit {p.returncode})")
                self.pool.spawn()

    def run(self) -> int:
        args = self.args
        queued = subprocess.run(
            [sys.executable, "-m", "adaptbench.cli", "queue", "-t", "tiny", "-o", "sgd", "--seeds",
             str(args.runs), "--tasks-dir", str(stress.TASKS), "--db", self.url],
            capture_output=True, text=True, env=self.pool.env,
        )
        if queued.returncode != 0:
            sys.exit(f"queueing failed: {queued.stderr}")
        from adaptbench.store import make_engine

        engine = make_engine(self.url, create=False)
        started = time.monotonic()
        for _ in range(args.workers):
            self.pool.spawn()
        # the faults start once the workers train (a worker's first run waits for torch to load)
        while stress.counts(engine).get("done", 0) < args.workers and time.monotonic() < started + 300:
            self.check_deaths()
            time.sleep(0.5)
        started = time.monotonic()
        schedule = [(0.10, self.storm), (0.25, lambda: self.pause(engine)), (0.40, self.restart),
                    (0.55, self.outage), (0.80, self.storm)]
        try:
            for at, fault in schedule:
                self._wait(max(0.0, started + at * args.seconds - time.monotonic()))
                if fault in (self.restart, self.outage):
                    self.busy(engine)
                fault()
            self._wait(max(0.0, started + args.seconds - time.monotonic()))
            deadline = time.monotonic() + args.drain
            while time.monotonic() < deadline:
                self.check_deaths()
                c = stress.counts(engine)
                if not c.get("queued") and not c.get("running"):
                    break
                time.sleep(0.5)
            wall = time.monotonic() - started  # from the first faults
        finally:
            exits = self.stop()
        self.deaths += sum(1 for code in exits if code != 130)
        return self.report(engine, wall, exits)

    def stop(self) -> list[int | None]:
        """SIGTERM to every worker, once each has started far enough to handle it: a worker
        spawned a moment ago (a storm's replacement) may still be in Python's own start-up,
        where no program can catch a signal and SIGTERM kills it (exit -15) -- not a death."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(map(_handles_sigterm, self.pool.live)):
            time.sleep(0.2)
        for p in self.pool.live:
            p.send_signal(signal.SIGTERM)
        codes = []
        for p in self.pool.live:
            try:
                codes.append(p.wait(timeout=60))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(None)
        return codes

    def report(self, engine: sa.Engine, wall: float, exits: list[int | None]) -> int:
        with engine.connect() as conn:
            statuses = dict(conn.execute(sa.text("SELECT id, status FROM runs")).all())
            dup_points = conn.execute(sa.text(
                "SELECT count(*) FROM (SELECT run_id FROM curve_points GROUP BY run_id, step, split "
                "HAVING count(*) > 1) AS d")).scalar_one()
        logs = self.pool.logs()
        done_reports = collections.Counter(re.findall(r"^run (\d+) done:", logs, re.M))
        by_status = collections.Counter(statuses.values())
        stuck = by_status["queued"] + by_status["running"]
        lost = self.args.runs - by_status["done"] - stuck
        duplicated = len({r for r, n in done_reports.items() if n > 1}) + dup_points
        refused = len(re.findall(r"^run \d+ lost:", logs, re.M))
        name = "postgresql" if self.server is not None else "sqlite"
        print(f"adaptbench chaos: {name}, {self.args.workers} workers, {self.args.runs} runs, lease "
              f"{self.args.lease:g} s, {wall:.0f} s")
        print(f"  faults: {', '.join(self.events)}; {self.kills} SIGKILLs in all, {self.pauses} SIGSTOP")
        print(f"  runs {self.args.runs}   kills {self.kills}   lost {lost}   duplicated {duplicated}   "
              f"stuck {stuck}   worker deaths {self.deaths}")
        print(f"  results refused to a worker whose claim had lapsed: {refused}; 'database "
              f"unreachable' lines: {logs.count('database unreachable')}; tracebacks: "
              f"{logs.count('Traceback')}; exit codes at the end: {dict(collections.Counter(exits))}")
        return 1 if lost or duplicated or stuck or self.deaths else 0


def postgres_missing() -> str | None:
    """Why the PostgreSQL part cannot run here, or None."""
    if stress.pgserver().find_bindir() is None:
        return ("no PostgreSQL server binaries (initdb, pg_ctl, postgres) on PATH or in the usual "
                "places; install them (.ci/postgres.sh) to run this part")
    if importlib.util.find_spec("psycopg") is None:
        return "psycopg is not installed: pip install '.[postgres]'"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--workers", "-k", type=int, default=6)
    parser.add_argument("--runs", "-n", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=45, help="how long the faults go on, per engine")
    parser.add_argument("--outage", type=float, default=10, help="seconds the database is away")
    parser.add_argument("--kill-every", type=float, default=6.0, help="mean seconds between single SIGKILLs")
    parser.add_argument("--lease", type=float, default=3.0)
    parser.add_argument("--step-sleep", type=float, default=0.05, help="seconds per training step")
    parser.add_argument("--drain", type=float, default=180, help="then wait this long for the queue to empty")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    code = 0
    for engine in ("sqlite", "postgresql") if args.engine == "both" else (args.engine,):
        with tempfile.TemporaryDirectory(prefix="adaptbench-chaos-") as tmp:
            folder = Path(tmp)
            if engine == "sqlite":
                code |= Chaos(f"sqlite:///{folder / 'chaos.db'}", folder, args).run()
                continue
            missing = postgres_missing()
            if missing:
                print(f"adaptbench chaos: postgresql skipped: {missing}")
                continue
            with stress.temp_postgres(durable=True) as pg:  # it is killed: no commit may be lost
                code |= Chaos(pg.create_database("chaos"), folder, args, server=pg).run()
    sys.exit(code)


if __name__ == "__main__":
    os.environ.pop("ADAPTBENCH_DB", None)
    main()
