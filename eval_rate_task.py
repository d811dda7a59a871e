"""Rate-task curves: `python eval_rate_task.py ...` is `lic eval ...` (see `lic eval --help`)."""

import sys

from lic.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main())
