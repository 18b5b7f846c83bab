"""`python -m ratscore`: the same command line as `ratscore`."""

from .cli import main

main()
