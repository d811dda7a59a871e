"""Rate-task curves: `python eval_rate_task.py ...` is `lic eval ...` (see `lic eval --help`)."""

from lic.errors import exit_program
from lic.evaluation.cli import main

if __name__ == "__main__":
    exit_program(main())
