"""Fresh evaluation seeds: once a (task, optimizer) lr grid has finished, its selected lr is run
again on the seeds EVAL_SEED_BASE + i, exactly once, whoever finishes the grid's last run.

Through the command line (`run`, `queue`, `worker`, `report`, `ls`) and the queue functions, on
SQLite and, where the race matters, on PostgreSQL (a server the test session starts; see
conftest.py).
"""

from __future__ import annotations

import csv
import io
import json
import textwrap
import threading

import pandas as pd
import pytest
import sqlalchemy as sa

from adaptbench import queue, store, worker
from adaptbench.spec import EVAL_SEED_BASE, RunSpec
from adaptbench.store import Run, make_engine
from adaptbench.tasks import Task

LOGREG = ("-t", "logistic-regression", "--steps", "10")


def ls_all(cli, *args: str) -> list[dict]:
    r = cli("ls", "--all", "--format", "json", *args)
    assert r.code == 0, r.err
    return json.loads(r.out)


def report_csv(cli, *args: str) -> dict[str, dict]:
    r = cli("report", "--format", "csv", *args)
    assert r.code == 0, r.err
    return {row["optimizer"]: row for row in csv.DictReader(io.StringIO(r.out))}


def evaluation_rows(rows: list[dict], optimizer: str | None = None) -> list[dict]:
    return [r for r in rows if r["role"] == "evaluation"
            and (optimizer is None or r["optimizer"] == optimizer)]


def expected_lr(rows: list[dict], optimizer: str, higher_is_better: bool = False) -> float:
    """The protocol's choice, recomputed from the stored selection runs: the best mean final
    validation metric per lr, a diverged run counting as the worst value, ties to the smaller lr."""
    df = pd.DataFrame([r for r in rows if r["role"] == "selection" and r["optimizer"] == optimizer])
    worst = float("-inf") if higher_is_better else float("inf")
    df["value"] = df["final_val_metric"].astype(float).where(df["status"] == "done", worst)
    means = df.groupby("lr")["value"].mean().reset_index()
    means = means.sort_values(["value", "lr"], ascending=[not higher_is_better, True])
    return float(means["lr"].iloc[0])


# --- `run`: selection, then evaluation, then the tuned summary --------------------------------

def test_run_trains_the_selected_lr_on_fresh_seeds_and_report_uses_them(cli):
    grid = ("-o", "adam,sgd", *LOGREG, "--lr", "0.01,0.1", "--seeds", "2", "--eval-seeds", "3")
    r = cli("run", *grid)
    assert r.code == 0, r.err
    assert "queued 8 new run(s)" in r.err
    rows = ls_all(cli)
    assert {r["status"] for r in rows} == {"done"}
    selection_seeds = {r["seed"] for r in rows if r["role"] == "selection"}
    assert selection_seeds == {0, 1}
    for opt in ("adam", "sgd"):
        ev = evaluation_rows(rows, opt)
        assert len(ev) == 3
        assert sorted(r["seed"] for r in ev) == [EVAL_SEED_BASE + i for i in range(3)]
        assert not selection_seeds & {r["seed"] for r in ev}
        assert {r["lr"] for r in ev} == {expected_lr(rows, opt)}
        assert {r["steps"] for r in ev} == {10}
    table = report_csv(cli)
    assert set(table) == {"adam@10steps", "sgd@10steps"}
    for opt, row in table.items():
        assert (row["n"], row["eval_n"], row["source"]) == ("3", "3", "evaluation"), row
        assert float(row["lr"]) == expected_lr(rows, opt.split("@")[0])
        ev = evaluation_rows(rows, opt.split("@")[0])
        assert float(row["mean"]) == pytest.approx(
            sum(r["final_test_metric"] for r in ev) / len(ev))

    again = cli("run", *grid)
    assert again.code == 0, again.err
    assert "queued 0 new run(s); 8 already stored" in again.err
    assert ls_all(cli) == rows


def test_without_eval_seeds_no_evaluation_runs_are_queued(cli):
    assert cli("run", "-o", "adam", *LOGREG, "--lr", "0.01,0.1", "--seeds", "2").code == 0
    rows = ls_all(cli)
    assert len(rows) == 4 and not evaluation_rows(rows)
    assert report_csv(cli)["adam@10steps"]["source"] == "selection"


# --- `queue` + `worker` -----------------------------------------------------------------------

def test_worker_trains_the_selection_runs_then_the_evaluation_runs(cli):
    r = cli("queue", "-o", "adam", *LOGREG, "--lr", "0.01,0.1", "--seeds", "2", "--eval-seeds", "2")
    assert r.code == 0, r.err
    assert not evaluation_rows(ls_all(cli))  # nothing to evaluate before the grid has run
    r = cli("worker")
    assert r.code == 0, r.err
    assert "6 done" in r.err
    rows = ls_all(cli)
    assert {r["status"] for r in rows} == {"done"}
    ev = evaluation_rows(rows)
    assert sorted(r["seed"] for r in ev) == [EVAL_SEED_BASE, EVAL_SEED_BASE + 1]
    assert {r["lr"] for r in ev} == {expected_lr(rows, "adam")}
    # the evaluation runs were queued after (and trained after) every selection run
    last_selection = max(r["finished_at"] for r in rows if r["role"] == "selection")
    assert all(r["created_at"] >= last_selection for r in ev)
    assert all(r["started_at"] >= last_selection for r in ev)
    assert json.loads(cli("status", "--format", "json").out)[0] == {"status": "queued", "runs": 0}


def test_evaluation_is_queued_only_when_the_last_selection_run_of_its_group_finished(cli, workdir):
    r = cli("queue", "-o", "adam,sgd", *LOGREG, "--lr", "0.01,0.1", "--seeds", "2",
            "--eval-seeds", "2")
    assert r.code == 0, r.err
    engine = make_engine(f"sqlite:///{workdir / 'results.db'}")
    opts = worker.WorkerOptions(max_runs=1)
    seen_evaluation = set()
    for _ in range(12):
        assert sum(worker.work(engine, opts).values()) == 1
        rows = ls_all(cli)
        for opt in ("adam", "sgd"):
            open_selection = [r for r in rows if r["optimizer"] == opt and r["role"] == "selection"
                              and r["status"] != "done"]
            ev = evaluation_rows(rows, opt)
            if open_selection:
                assert not ev, f"{opt}: evaluation queued while {len(open_selection)} selection run(s) open"
            else:
                assert len(ev) == 2
                seen_evaluation.add(opt)
    assert seen_evaluation == {"adam", "sgd"}
    assert worker.work(engine, opts) == {}  # the queue is empty
    rows = ls_all(cli)
    assert len(rows) == 12 and {r["status"] for r in rows} == {"done"}
    engine.dispose()


def test_a_finished_grid_queued_again_with_eval_seeds_gets_them_and_more_later(cli):
    grid = ("-o", "adam", *LOGREG, "--lr", "0.01,0.1", "--seeds", "2")
    assert cli("run", *grid).code == 0
    assert not evaluation_rows(ls_all(cli))

    r = cli("queue", *grid, "--eval-seeds", "2")
    assert r.code == 0, r.err
    assert "queued 0 new run(s); 4 already stored" in r.err
    rows = ls_all(cli)
    ev = evaluation_rows(rows)
    assert sorted(r["seed"] for r in ev) == [EVAL_SEED_BASE, EVAL_SEED_BASE + 1]
    assert {r["status"] for r in ev} == {"queued"}
    lr = expected_lr(rows, "adam")
    assert {r["lr"] for r in ev} == {lr}

    assert cli("queue", *grid, "--eval-seeds", "2").code == 0  # again: nothing new
    assert len(evaluation_rows(ls_all(cli))) == 2

    assert cli("queue", *grid, "--eval-seeds", "4").code == 0
    ev = evaluation_rows(ls_all(cli))
    assert sorted(r["seed"] for r in ev) == [EVAL_SEED_BASE + i for i in range(4)]
    assert {r["lr"] for r in ev} == {lr}
    assert cli("worker").code == 0
    row = report_csv(cli)["adam@10steps"]
    assert (row["n"], row["eval_n"], row["source"]) == ("4", "4", "evaluation")
    # lowering the number later takes nothing away
    assert cli("queue", *grid, "--eval-seeds", "1").code == 0
    assert len(evaluation_rows(ls_all(cli))) == 4


# --- exactly once, with several workers --------------------------------------------------------

def test_several_workers_on_postgresql_queue_each_evaluation_once(cli, postgres_url):
    r = cli("queue", "-o", "adam,sgd", *LOGREG, "--lr", "0.01,0.1", "--seeds", "2",
            "--eval-seeds", "3", "--db", postgres_url)
    assert r.code == 0, r.err
    r = cli("worker", "--jobs", "2", "--db", postgres_url)
    assert r.code == 0, r.err
    rows = ls_all(cli, "--db", postgres_url)
    assert len(rows) == 8 + 2 * 3
    assert {r["status"] for r in rows} == {"done"}
    for opt in ("adam", "sgd"):
        ev = evaluation_rows(rows, opt)
        assert sorted(r["seed"] for r in ev) == [EVAL_SEED_BASE + i for i in range(3)]
        assert {r["lr"] for r in ev} == {expected_lr(rows, opt)}


TINY = Task(name="tiny", task_type="regression", description="", build=lambda seed, device: None,
            metric="mse", higher_is_better=False, steps=5, batch_size=8, eval_every=5)


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'q.db'}"
    return request.getfixturevalue("postgres_url")


def test_two_finishers_of_one_group_at_once_queue_its_evaluation_exactly_once(url):
    """The two last runs of a group finish at the same moment, from two engines: neither may
    miss the other's result (zero evaluation runs) and both may not queue them (twice)."""
    engines = [make_engine(url), make_engine(url)]
    rounds, n_eval = 8, 3
    try:
        for k in range(rounds):
            study = f"race{k}"
            specs = [RunSpec("tiny", "sgd", lr, 0, 5, 8, study=study) for lr in (0.01, 0.1)]
            queue.enqueue(engines[0], specs, {"tiny": TINY}, eval_seeds=n_eval)
            claims = [queue.claim(engines[i], f"w{i}", run_ids=None) for i in range(2)]
            assert {c.spec.study for c in claims} == {study}
            start = threading.Barrier(2)
            errors: list[BaseException] = []

            def finish(i: int) -> None:
                try:
                    value = 0.5 if claims[i].spec.lr == 0.1 else 1.0  # lr 0.1 is better
                    start.wait()
                    assert queue.finish(engines[i], claims[i],
                                        {"status": "done", "final_val_metric": value,
                                         "final_test_metric": value}, [])
                except BaseException as exc:  # noqa: BLE001 -- reported below
                    errors.append(exc)

            threads = [threading.Thread(target=finish, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            assert not errors, errors
            with store.read(engines[0]) as conn:
                ev = conn.execute(sa.select(Run.seed, Run.lr, Run.status).where(
                    Run.study == study, Run.role == "evaluation")).all()
            assert len(ev) == n_eval, f"round {k}: {len(ev)} evaluation runs"
            assert sorted(s for s, _, _ in ev) == [EVAL_SEED_BASE + i for i in range(n_eval)]
            assert {lr for _, lr, _ in ev} == {0.1}
            assert {st for _, _, st in ev} == {"queued"}
            # the evaluation runs finishing queue nothing more
            while (c := queue.claim(engines[0], "w")) is not None:
                queue.finish(engines[0], c, {"status": "done", "final_val_metric": 0.4}, [])
            with store.read(engines[0]) as conn:
                assert conn.execute(sa.select(sa.func.count()).select_from(Run).where(
                    Run.study == study)).scalar_one() == 2 + n_eval
    finally:
        for e in engines:
            e.dispose()


# --- a group with no trustworthy lr ------------------------------------------------------------

def test_a_group_whose_every_run_diverged_gets_no_evaluation_runs(cli):
    r = cli("run", "-o", "sgd,adam", "-t", "rosenbrock", "--lr", "10", "--seeds", "2",
            "--steps", "10", "--eval-seeds", "2")
    assert r.code == 0, r.err
    rows = ls_all(cli)
    sgd = [r for r in rows if r["optimizer"] == "sgd"]
    assert {r["status"] for r in sgd} == {"diverged"}
    assert all(r["role"] == "selection" for r in sgd)
    table = report_csv(cli)
    assert table["sgd@10steps"]["all_diverged"] == "True"
    assert table["sgd@10steps"]["source"] == "selection"
    assert table["sgd@10steps"]["eval_n"] == "0"
    # adam does not diverge there: its group is evaluated as usual
    adam = [r for r in rows if r["optimizer"] == "adam"]
    if {r["status"] for r in adam if r["role"] == "selection"} != {"diverged"}:
        assert len(evaluation_rows(rows, "adam")) == 2
        assert table["adam@10steps"]["source"] == "evaluation"
    assert "every lr diverged" in cli("report", "--format", "csv").err


# --- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    (("--seed", "1000000"), "seeds from 1,000,000 up are the evaluation seeds"),
    (("--seed", "3", "--seed", "2000000"), "got 2000000"),
    (("--eval-seeds", "-1"), "Invalid value for '--eval-seeds'"),
    (("--eval-seeds", "1001"), "Invalid value for '--eval-seeds'"),
    (("--seeds", "1000000000"), "Invalid value for '--seeds'"),
])
@pytest.mark.parametrize("command", ["queue", "run"])
def test_seeds_that_collide_with_evaluation_seeds_are_refused(cli, workdir, command, args, message):
    assert cli("queue", "-o", "adam", *LOGREG, "--seeds", "1").code == 0
    rows = ls_all(cli)
    r = cli(command, "-o", "adam", *LOGREG, *args)
    assert r.code == 2
    assert len(r.err.strip().splitlines()) == 1, r.err
    assert r.err.startswith("adaptbench: error: ") and message in r.err, r.err
    assert "Traceback" not in r.err and "MemoryError" not in r.err
    assert ls_all(cli) == rows


def test_refused_seeds_create_no_database(cli, workdir):
    for args in (("--seed", "1000000"), ("--eval-seeds", "-1"), ("--seeds", "1000000000")):
        assert cli("queue", "-o", "adam", *LOGREG, *args).code == 2
    assert not (workdir / "results.db").exists()


# --- task definitions (fingerprints) -----------------------------------------------------------

TASK_FILE = '''
import torch

from adaptbench.tasks import Problem, Task

SCALE = {scale}


def build(seed, device):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(100, 4, generator=g)
    y = SCALE * (x @ torch.tensor([1.0, -2.0, 0.5, 0.0])) + 0.1 * torch.randn(100, generator=g)
    x, y = x.to(device), y.to(device)
    model = torch.nn.Linear(4, 1).to(device)
    mse = lambda out, t: torch.nn.functional.mse_loss(out.squeeze(-1), t)
    return Problem(model=model, train=(x[:60], y[:60]), val=(x[60:80], y[60:80]),
                   test=(x[80:], y[80:]), loss=mse, metric=mse)


TASKS = [Task(name="fp-linear", task_type="regression", description="a linear fit", build=build,
              metric="mse", higher_is_better=False, steps=20, batch_size=16, eval_every=10,
              lrs=(0.01, 0.1), target=0.5)]
'''


def write_task(folder, scale: str):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fplinear.py").write_text(textwrap.dedent(TASK_FILE.replace("{scale}", scale)))
    return str(folder)


def test_an_edited_task_is_queued_anew_and_reports_use_only_its_new_runs(cli, workdir):
    folder = write_task(workdir / "mytasks", "1.0")
    grid = ("-o", "adam", "-t", "fp-linear", "--lr", "0.1", "--seeds", "2", "--tasks-dir", folder)
    r = cli("queue", *grid)
    assert r.code == 0 and "queued 2 new run(s)" in r.err, r.err
    assert cli("worker", "--tasks-dir", folder).code == 0
    old = ls_all(cli)
    assert {r["status"] for r in old} == {"done"}

    write_task(workdir / "mytasks", "3.0")
    r = cli("queue", *grid)
    assert r.code == 0, r.err
    assert "queued 2 new run(s); 0 already stored" in r.err
    assert cli("worker", "--tasks-dir", folder).code == 0
    rows = ls_all(cli)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"done"}
    new = [r for r in rows if r["id"] not in {o["id"] for o in old}]
    assert len({r["fingerprint"] for r in new}) == 1
    assert {r["fingerprint"] for r in new}.isdisjoint({r["fingerprint"] for r in old})

    r = cli("report", "--format", "csv")
    assert r.code == 0, r.err
    row = next(csv.DictReader(io.StringIO(r.out)))
    assert row["n"] == "2"
    assert float(row["mean"]) == pytest.approx(sum(r["final_test_metric"] for r in new) / 2)
    assert "2 run(s) of an older definition" in r.err and "fp-linear" in r.err


def test_a_run_queued_before_its_task_was_edited_fails_with_a_clear_message(cli, workdir):
    folder = write_task(workdir / "mytasks", "1.0")
    r = cli("queue", "-o", "adam", "-t", "fp-linear", "--seeds", "1", "--tasks-dir", folder)
    assert r.code == 0, r.err
    write_task(workdir / "mytasks", "2.0")
    cli("worker", "--tasks-dir", folder)
    failed = json.loads(cli("ls", "--status", "failed", "--format", "json").out)
    assert len(failed) == 1
    assert "changed since this run was queued" in failed[0]["error"]
    assert failed[0]["final_test_metric"] is None


def test_a_long_lived_worker_trains_the_edited_task_not_the_one_it_loaded_first(cli, workdir):
    """A worker process (`worker --wait`, whose training process lives on between runs) that
    trained a task before it was edited must train the new definition's runs with the new code."""
    folder = write_task(workdir / "mytasks", "1.0")
    grid = ("-o", "adam", "-t", "fp-linear", "--lr", "0.1", "--seeds", "1", "--tasks-dir", folder)
    engine = make_engine(f"sqlite:///{workdir / 'results.db'}")
    opts = worker.WorkerOptions(tasks_dirs=[folder])  # one process trains both runs
    assert cli("queue", *grid).code == 0
    assert worker.work(engine, opts) == {"done": 1}
    write_task(workdir / "mytasks", "3.0")  # y three times larger: a much larger test mse
    assert "queued 1 new run(s)" in cli("queue", *grid).err
    assert worker.work(engine, opts) == {"done": 1}
    old, new = ls_all(cli)
    assert old["fingerprint"] != new["fingerprint"]
    assert new["final_test_metric"] != pytest.approx(old["final_test_metric"])
    engine.dispose()
