"""`python -m arpo` and `torchrun -m arpo`: the `arpo` command."""

from arpo.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
