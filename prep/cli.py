"""Command-line helpers shared by the preparation commands (prep.bigearthnet, prep.so2sat).

``summary`` is the end-of-run table of a manifest; ``report`` and ``error`` print a command's
outcome and give its exit status. absl takes one value per occurrence of a
multi-value flag (``--h5 a --h5 b``); the upstream scripts and our docs also accept several values
after one flag (``-n a.csv b.csv``).
``expand_nargs`` rewrites the second form into the first before absl parses the command line.
"""
from __future__ import annotations

import os
import sys
from typing import Mapping, Sequence

from prep.shards import MANIFEST


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


def summary(manifest: dict, seconds: float | None = None, input_bytes: int | None = None,
            max_listed: int = 50) -> str:
    """Counts per split, the reasons for exclusions, every skipped item (up to ``max_listed``) and
    the rate; ``input_bytes`` adds MB/s of input read."""
    width = max([10] + [len(n) + 2 for n in manifest["splits"]])
    cols = ("listed", "written", "excluded", "skipped")
    rows = [f"{'split':<{width}}" + "".join(f"{c:>10}" for c in cols) + f"{'shards':>8}"]
    for name, s in manifest["splits"].items():
        rows.append(f"{name:<{width}}" + "".join(f"{s[c]:>10}" for c in cols) + f"{len(s['shards']):>8}")
    t = manifest["totals"]
    rows.append(f"{'total':<{width}}" + "".join(f"{t[c]:>10}" for c in cols))
    reasons: dict[str, int] = {}
    for e in manifest["excluded"]:
        reasons[e["reason"]] = reasons.get(e["reason"], 0) + 1
    for r, n in sorted(reasons.items()):
        rows.append(f"excluded {n:>7}: {r}")
    for s in manifest["skipped"][:max_listed]:
        rows.append(f"skipped  [{s['split']}] {s['key']}: {s['reason']}")
    if len(manifest["skipped"]) > max_listed:
        rows.append(f"... and {len(manifest['skipped']) - max_listed} more skipped (see manifest.json)")
    if seconds:
        n, dt = t["listed"], max(seconds, 1e-9)
        line = f"{n} patches in {seconds:.1f} s ({n / dt:.0f} patches/s"
        if input_bytes:
            line += f", {input_bytes / 1e6 / dt:.0f} MB/s of input"
        rows.append(line + ")")
    return "\n".join(rows)


def report(manifest: dict, out_dir: str, seconds: float, input_bytes: int | None = None) -> int:
    """Print the summary table and where the manifest is; returns the exit status 0."""
    print(summary(manifest, seconds, input_bytes))
    print(f"manifest: {os.path.join(out_dir, MANIFEST)}")
    return 0


def error(e: Exception) -> int:
    """Print a preparation error (its message names the file and the problem); returns exit status 1."""
    print(f"error: {e}", file=sys.stderr)
    return 1
