"""`python -m lic` is the `lic` command."""

from lic.cli import console

console()
