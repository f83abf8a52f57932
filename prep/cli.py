"""Command-line helpers shared by the preparation commands (prep.bigearthnet, prep.so2sat).

absl takes one value per occurrence of a multi-value flag (``--h5 a --h5 b``); the upstream
scripts and our docs also accept several values after one flag (``-n a.csv b.csv``).
``expand_nargs`` rewrites the second form into the first before absl parses the command line.
"""
from __future__ import annotations

from typing import Mapping, Sequence


def expand_nargs(argv: Sequence[str], flags: Mapping[str, str]) -> list[str]:
    """Rewrite ``FLAG a b c`` into ``NAME a NAME b NAME c`` for every spelling FLAG in ``flags``.

    ``flags`` maps each spelling (``-n``, ``--splits``, ...) to the flag it stands for
    (``--splits``). The values are the arguments after FLAG up to the next one starting with
    ``-``; a FLAG followed by none is left as it is (absl then reports the missing value).
    Everything else passes through unchanged.
    """
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        i += 1
        if a not in flags:
            out.append(a)
            continue
        vals = []
        while i < len(argv) and not argv[i].startswith("-"):
            vals.append(argv[i])
            i += 1
        if not vals:
            out.append(a)
        for v in vals:
            out += [flags[a], v]
    return out
