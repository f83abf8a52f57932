"""BigEarthNet-S2 patch folders on a Beam filesystem (gs://, s3://, hdfs://): the Beam workers' reader.

``produce_remote`` is ``raw.produce`` for a raw archive that is not a local folder: each patch
folder is copied to the worker's temporary folder, read there, and removed. Used by
``command.plan`` when ``--root_folder`` names a Beam filesystem (only a Beam runner prepares it).
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from typing import Iterator, Sequence

from prep import beam
from prep.datasets.bigearthnet import raw
from prep.shards import Exclude, Skip


def produce_remote(items: Sequence[str], root: str, schema_name: str, keep_excluded: bool = False) -> Iterator:
    """``raw.produce`` for patch folders on a Beam filesystem: one folder at a time."""
    for name in items:
        tmp = tempfile.mkdtemp(prefix="ben_patch_")
        try:
            os.mkdir(os.path.join(tmp, name))
            for path in beam.sizes(beam.join(root, name, "*")):
                beam.download(path, os.path.join(tmp, name, path.rsplit("/", 1)[-1]))
            for result in raw.produce([name], tmp, schema_name, keep_excluded=keep_excluded):
                if isinstance(result, (Skip, Exclude)):
                    result = dataclasses.replace(result, reason=result.reason.replace(tmp, root))
                yield result
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
