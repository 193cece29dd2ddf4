"""adaptbench: a command-line benchmark for deep-learning optimizers with a results database."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("adaptbench")
except PackageNotFoundError:  # running from a source checkout that is not installed
    __version__ = "0.0.0+source"


def open(db=None, **filters):  # noqa: A001 -- `adaptbench.open(url)`, as `sqlite3.connect`
    """Open a results database from Python: `adaptbench.open("results.db").summary()`.

    Filters as the report options: task=, task_type=, optim=, study= (a name or a list).
    Returns an `adaptbench.api.Study`; see its methods (runs, curves, summary, wins, compare, …).
    """
    from adaptbench.api import open as _open

    return _open(db, **filters)
