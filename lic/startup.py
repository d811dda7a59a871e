"""Start-up of the import-heavy commands (`lic train`, `lic eval`): the cyclic garbage
collector is paused while they import torch, CompressAI and Lightning, and what the imports
created is frozen out of later collections once the work starts.

Every full collection walks each object created so far, and an import-heavy start runs a
dozen of them: importing torch, CompressAI and Lightning took 5.2 s with collections and
4.2 s without, plus 0.4 s for one collection after (2-core CPU). That collection frees the
imports' garbage (frozen, it would stay: 60 MB more at `lic eval`'s peak); the rest is
frozen, the `gc` module's own recipe before worker processes fork (their copy-on-write pages
stay shared), and stays out of every later collection. Only `lic`'s console pauses: a
library caller never does, and `imports_done` then does nothing. This module imports
nothing heavy.
"""

from __future__ import annotations

import gc

_paused = False


def pause_collection() -> None:
    """Pause cyclic garbage collection until `imports_done` (unless already off)."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def imports_done() -> None:
    """The command's imports are over: collect their garbage once, freeze the rest and
    collect again from then on. Does nothing unless `pause_collection` paused collection
    (and only the first time)."""
    global _paused
    if _paused:
        _paused = False
        gc.collect()  # the imports' garbage first: frozen, it would never be freed
        gc.freeze()
        gc.enable()
