"""`python -m adaptbench.cli`: the console script."""

from adaptbench.entry import main

main()
