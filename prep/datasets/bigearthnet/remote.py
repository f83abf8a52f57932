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
    """``raw.produce`` for patch folders on a Beam filesystem: one folder at a time.

    Each patch folder ``<root>/<name>/`` is copied into a fresh temporary folder, read by
    ``raw.produce`` and removed; a ``Skip`` or ``Exclude`` reason names the remote path, not the
    copy. Yields one ``Record``, ``Skip`` or ``Exclude`` per item, in order.

    Args:
      items: patch names (folder names under ``root``).
      root: the Beam filesystem folder of patch folders (``gs://...``), without a trailing ``/``.
      schema_name: ``"compact"`` or ``"upstream"``.
      keep_excluded: write patches without a 19-class target too.

    Raises:
      OSError: a patch folder's files cannot be listed or copied (Beam filesystem errors).
    """
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
