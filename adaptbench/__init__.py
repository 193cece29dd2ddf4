"""adaptbench: a command-line benchmark for deep-learning optimizers with a results database."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("adaptbench")
except PackageNotFoundError:  # running from a source checkout that is not installed
    __version__ = "0.0.0+source"
