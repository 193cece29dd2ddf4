"""`python -m adaptbench.cli`: the console script."""

from adaptbench.cli import main

main()
