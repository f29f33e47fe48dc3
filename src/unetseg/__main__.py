"""`python -m unetseg` (and `torchrun ... -m unetseg train ...`) runs the command line."""

from .cli import main

main()
