"""Train a codec: `python train.py fit --config configs/demo.yaml` (LightningCLI).

Runs go to `<trainer.default_root_dir>/<codec>_<objective>_lambda<lambda>/`; see
`lic.training.cli`. Errors are one line (exit 2 usage/input, 1 runtime; LIC_DEBUG=1 for the
traceback).
"""

from lic.errors import exit_program
from lic.training.cli import main

if __name__ == "__main__":
    exit_program(main())
