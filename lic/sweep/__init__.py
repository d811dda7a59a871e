"""`lic sweep`: train a grid of codecs (objectives x lambdas x codecs) on SLURM or locally
through submitit, then evaluate every checkpoint in one `lic eval` and report.

plan.py reads sweep files and names the runs (no torch); jobs.py is what submitit runs
(one training run, the evaluation); launch.py submits them (SLURM array, local, dry run);
cli.py is the `lic sweep` subcommand.
"""
