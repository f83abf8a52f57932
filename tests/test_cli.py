"""The command convention, across every command (issue: a new user's first hour).

- every console script gives the same help as ``python -m`` (the module's description and its
  own flags);
- a missing required flag is one line, ``error: ... (... --help)``, exit 2, no help dump;
- a subcommand's help shows its own flags only;
- the same multi-value flag forms everywhere.
"""
from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
TF_BANNER = ("WARNING: All log messages before absl::InitializeLog", "I0000 ", "W0000 ", "E0000 ",
             "To enable the following instructions")


def run(cmd: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)


def own_lines(text: str) -> list[str]:
    """The lines a command printed itself (TensorFlow's C++ start-up banner filtered out)."""
    return [x for x in text.splitlines() if x.strip() and not x.startswith(TF_BANNER)]


def console_scripts() -> dict[str, str]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    lines = cfg["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict(tuple(x.strip() for x in line.split("=")) for line in lines)


# Each console script: a flag of its own that --help must show (the synthetic dispatcher lists datasets).
OWN_FLAG = {
    "eorecords-prep": "bigearthnet", "eorecords-prep-bigearthnet": "--root_folder", "eorecords-prep-so2sat": "--h5",
    "eorecords-verify": "--batch_size", "eorecords-synthetic": "so2sat", "eorecords-train": "--learning_rate",
    "eorecords-evaluate": "--predictions", "eorecords-pretrained": "--cache_dir", "eorecords-predict": "--block_size",
}


def test_every_console_script_is_listed_here():
    assert set(console_scripts()) == set(OWN_FLAG)


@pytest.mark.parametrize("script", sorted(OWN_FLAG))
def test_console_script_help_shows_the_description_and_own_flags(script):
    r = run([str(BIN / script), "--help"])
    assert r.returncode in (0, 1), r.stderr  # absl exits 1 after printing --help
    text = r.stdout
    assert OWN_FLAG[script] in text, text[-2000:]
    assert len(own_lines(text)) >= 5 and "Traceback" not in r.stderr


MISSING = [
    (["-m", "prep", "bigearthnet", "-o", "x"], "--root_folder"),
    (["-m", "prep.bigearthnet", "-r", "x"], "--out_dir"),
    (["-m", "prep", "so2sat", "-o", "x"], "--h5"),
    (["-m", "prep.so2sat", "geotiff", "--h5", "a.h5", "-o", "x"], "--rows"),
    (["-m", "prep.synthetic", "bigearthnet"], "--out_dir"),
    (["-m", "prep.synthetic", "so2sat"], "--out_dir"),
    (["train.py", "--data_dir", "x"], "--out_dir"),
    (["evaluate.py"], "--predictions"),
    (["predict.py", "--output", "x.tif"], "--input"),
    (["-m", "prep.verify"], "OUT"),
    (["-m", "pretrained", "fetch"], "NAME"),
    (["-m", "prep", "nosuchdataset"], "unknown dataset"),
    # Beam options on the local path were silently ignored
    (["-m", "prep.bigearthnet", "-o", "out", "--beam_options=--shard_writer=writetotfrecord"], "needs a Beam --runner"),
]


@pytest.mark.parametrize("args,mentions", MISSING, ids=[" ".join(a) for a, _ in MISSING])
def test_a_missing_flag_is_one_line_and_exit_2(args, mentions, tmp_path):
    r = run([sys.executable, *[str(REPO / a) if a.endswith(".py") else a for a in args]], cwd=tmp_path)
    lines = own_lines(r.stderr)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--help" in lines[0], lines
    assert mentions in lines[0], lines
    assert not own_lines(r.stdout), r.stdout[-2000:]


def test_a_subcommand_s_help_shows_its_own_flags():
    r = run([sys.executable, "-m", "prep.so2sat", "geotiff", "--help"])
    assert "--rows" in r.stdout and "--sensors" in r.stdout
    assert "--compression" not in r.stdout and "--shard_size_mb" not in r.stdout


def test_so2sat_says_a_missing_file_is_missing(tmp_path):
    r = run([sys.executable, "-m", "prep.so2sat", "--h5", "nothere.h5", "-o", str(tmp_path / "o")], cwd=tmp_path)
    lines = own_lines(r.stderr)
    assert r.returncode == 1 and lines == ["error: nothere.h5: no such file"], r.stderr


def test_multi_value_flags_accept_the_same_forms():
    from prep.datasets.bigearthnet import command as ben
    from prep.datasets.so2sat import command as s2s

    spaced = ben.expand_nargs(["p", "-n", "a.csv", "b.csv", "--exclusion_lists", "x.csv", "y.csv", "-o", "o"])
    assert spaced == ["p", "--splits", "a.csv", "--splits", "b.csv", "--exclusion_lists", "x.csv",
                      "--exclusion_lists", "y.csv", "-o", "o"]
    assert s2s.expand_nargs(["p", "--h5", "a.h5", "b.h5", "--split_names", "x", "y"]) == [
        "p", "--h5", "a.h5", "--h5", "b.h5", "--split_names", "x", "--split_names", "y"]
    assert s2s.split_list(["x,y"]) == s2s.split_list(["x", "y"]) == ["x", "y"]


def test_synthetic_refuses_a_folder_that_holds_files_unless_overwrite(tmp_path):
    out = tmp_path / "raw"
    first = run([sys.executable, "-m", "prep.synthetic", "bigearthnet", "--out_dir", str(out), "--num_patches", "6"])
    assert first.returncode == 0, first.stderr
    before = sorted(p.name for p in out.iterdir())
    again = run([sys.executable, "-m", "prep.synthetic", "bigearthnet", "--out_dir", str(out), "--num_patches", "4",
                 "--seed", "1"])
    lines = own_lines(again.stderr)
    assert again.returncode == 2 and len(lines) == 1 and "--overwrite" in lines[0], again.stderr
    assert sorted(p.name for p in out.iterdir()) == before  # nothing mixed in
    forced = run([sys.executable, "-m", "prep.synthetic", "bigearthnet", "--out_dir", str(out), "--num_patches", "4",
                  "--seed", "1", "--overwrite"])
    assert forced.returncode == 0, forced.stderr
    folders = [p for p in out.iterdir() if p.is_dir()]
    assert len(folders) == 4  # the old patches are gone, not mixed with the new ones


def test_the_dataset_list_names_every_dataset_apart_from_its_title(capsys):
    from prep import cli, datasets

    with pytest.raises(SystemExit) as exit_:
        cli.dataset_from_argv(["prep", "--help"], "Prepare a dataset.\n")
    assert exit_.value.code == 0
    rows = capsys.readouterr().out.split("Datasets:\n")[1].splitlines()
    known = datasets.all_datasets()
    assert len(rows) == len(known)
    for row, ds in zip(rows, known):
        name, title = row.split(None, 1)  # a space between the longest name and its title too
        assert (name, title) == (ds.cli_name, ds.title)
