"""`python -m adaptbench`: the console script."""

from adaptbench.entry import main

main()
