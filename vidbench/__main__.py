"""`python -m vidbench <command>`: the same command line as `vidbench` (what the workflow's rules run)."""
import sys

from vidbench.cli import main

sys.exit(main())
