"""The README walk: the Quick start commands run as written, in order, on a fresh folder.

Each line of the README's "Quick start" bash block runs in one temporary folder, in order, with
``python`` being this interpreter and ``train.py``/``evaluate.py`` found in the repository (the
README runs them from its root). Every command must exit 0; the outputs the block promises exist.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def test_the_quick_start_runs_as_written(tmp_path):
    commands = quick_start_commands()
    assert len(commands) >= 8 and commands[0].startswith("python -m prep.synthetic bigearthnet")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    for line in commands:
        args = shlex.split(line)
        assert args[0] == "python", line
        args = [sys.executable] + [str(REPO / a) if a in ("train.py", "evaluate.py") else a for a in args[1:]]
        r = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"{line}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    for path in ("records/manifest.json", "runs/kbranch/eval/report.md", "lcz/manifest.json", "runs/lcz/eval/report.md"):
        assert (tmp_path / path).is_file(), path


def test_every_tfds_build_line_names_its_config():
    """A bare ``tfds build`` builds every config (six full passes over BigEarthNet): the README shows --config."""
    lines = [x for x in (REPO / "README.md").read_text().splitlines() if x.startswith("tfds build")]
    assert lines and all("--config" in x for x in lines), lines
