"""Per-band pixel statistics that merge exactly across shards.

Integer bands (uint8/uint16) keep a full histogram, so mean, std, min, max and percentiles
are exact whatever the sharding. Float bands keep sums, extremes and a deterministic strided
sample of pixels for the percentiles (approximate, documented in the manifest).
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

PERCENTILES = (1, 2, 5, 25, 50, 75, 95, 98, 99)
SAMPLE_STRIDE = 97  # float bands: every 97th pixel of every update feeds the percentile sample
_MAX_SAMPLE = 1 << 20  # float bands: the percentile sample is thinned to at most ~1M values


class BandStats:
    """Running statistics of one band's pixels, mergeable across shards.

    Integer bands of at most 16 bits (uint8, uint16: e.g. Sentinel-2 L2A DN = BOA reflectance
    x 10000) keep a full histogram, so every statistic is exact. Float bands (So2Sat reflectance,
    S1 backscatter in dB) keep count, sum, sum of squares, min, max and a deterministic sample of
    every ``SAMPLE_STRIDE``-th pixel (thinned to about ``_MAX_SAMPLE``) for approximate percentiles.

    Args:
        dtype: numpy dtype name of the band's stored pixels ("uint16", "float32", ...).
    """

    def __init__(self, dtype: str):
        self.dtype = np.dtype(dtype)
        self.exact = self.dtype.kind == "u" and self.dtype.itemsize <= 2
        self.count = 0
        if self.exact:
            self.hist = np.zeros(1 << (8 * self.dtype.itemsize), np.int64)
        else:
            self.sum = 0.0
            self.sumsq = 0.0
            self.min = np.inf
            self.max = -np.inf
            self.samples: list[np.ndarray] = []
            self._sampled = 0

    def update(self, pixels: np.ndarray) -> None:
        """Adds ``pixels`` (any shape, the band's dtype; flattened) to the statistics.

        Raises:
            ValueError: negative pixels on an exact (histogram) band.
            TypeError: float pixels on an exact band.
        """
        a = np.asarray(pixels).reshape(-1)
        if self.exact:
            self.count += a.size
            counts = np.bincount(a)  # up to the largest value only: far cheaper than the full 65,536 bins
            self.hist[: counts.size] += counts
        elif a.size:
            self.merge_state(float_state(a))

    # --- persistence and merging (sidecar files of finished shards) ---
    def state(self) -> dict:
        """Returns the partial state to persist or merge: numbers and numpy arrays only.

        Exact bands: ``count``, ``bins`` (values present) and their ``counts``; float bands:
        ``count``, ``sum``, ``sumsq``, ``min``, ``max`` and the float64 percentile ``sample``.
        """
        if self.exact:
            nz = np.flatnonzero(self.hist)
            return {"count": self.count, "bins": nz, "counts": self.hist[nz]}
        sample = np.concatenate(self.samples) if self.samples else np.empty(0)
        return {"count": self.count, "sum": self.sum, "sumsq": self.sumsq, "min": self.min,
                "max": self.max, "sample": sample}

    def merge_state(self, st: dict) -> None:
        """Adds a partial state (``state()`` or ``float_state`` output of the same kind of band)."""
        self.count += int(st["count"])
        if self.exact:
            np.add.at(self.hist, np.asarray(st["bins"], np.int64), np.asarray(st["counts"], np.int64))
        else:
            self.sum += float(st["sum"])
            self.sumsq += float(st["sumsq"])
            self.min = min(self.min, float(st["min"]))
            self.max = max(self.max, float(st["max"]))
            if np.size(st["sample"]):
                self.samples.append(np.asarray(st["sample"], np.float64))
                self._sampled += self.samples[-1].size
                if self._sampled > 2 * _MAX_SAMPLE:
                    self._thin()

    def _thin(self) -> None:
        """Keep every other sampled value (deterministic), bounding memory on huge datasets."""
        merged = np.concatenate(self.samples)[::2].copy()
        self.samples, self._sampled = [merged], merged.size

    def summary(self) -> dict | None:
        """Returns the band's statistics for the manifest, or None when no pixel was seen.

        Returns:
            ``{"mean", "std" (population), "min", "max", "percentiles": {"1": ..., "99": ...},
            "exact", "count"}`` in the band's units. Percentiles use numpy's ``method="lower"`` (the
            k-th smallest pixel): exact for histogram bands, from the sample for float bands.
        """
        if self.count == 0:
            return None
        if self.exact:
            v = np.arange(self.hist.size, dtype=np.float64)
            n = float(self.count)
            mean = float(np.dot(self.hist, v) / n)
            var = float(np.dot(self.hist, (v - mean) ** 2) / n)
            nz = np.flatnonzero(self.hist)
            cdf = np.cumsum(self.hist)
            # numpy's method="lower": the k-th smallest pixel, k = floor(p/100 * (n - 1)) (0-based)
            pct = {str(p): float(np.searchsorted(cdf, int(np.floor(p / 100 * (self.count - 1))) + 1))
                   for p in PERCENTILES}
            return {"mean": mean, "std": var ** 0.5, "min": float(nz[0]), "max": float(nz[-1]),
                    "percentiles": pct, "exact": True, "count": int(self.count)}
        n = float(self.count)
        mean = self.sum / n
        var = max(self.sumsq / n - mean * mean, 0.0)
        sample = np.concatenate(self.samples) if self.samples else np.array([mean])
        values = np.percentile(sample, PERCENTILES, method="lower")  # one partition for all of them
        pct = {str(p): float(v) for p, v in zip(PERCENTILES, values)}
        return {"mean": mean, "std": var ** 0.5, "min": self.min, "max": self.max,
                "percentiles": pct, "exact": False, "count": int(self.count)}


def float_state(pixels: np.ndarray) -> dict:
    """The partial state of one ``BandStats.update(pixels)`` call on a float band (``pixels`` not empty)."""
    a64 = np.asarray(pixels).reshape(-1).astype(np.float64)
    return {"count": a64.size, "sum": float(a64.sum()), "sumsq": float(np.dot(a64, a64)),
            "min": float(a64.min()), "max": float(a64.max()), "sample": a64[::SAMPLE_STRIDE].copy()}


def band_states(x: np.ndarray, good: np.ndarray, lo: np.ndarray, hi: np.ndarray, names: Sequence[str],
                group: int, batch: int, work: np.ndarray | None = None) -> list[tuple[str, dict]]:
    """Statistics of the good rows of ``x`` (m, bands, pixels) as partial states, group by group.

    Merging them in order (``BandStats.merge_state``) gives exactly the state of calling
    ``BandStats.update`` with each group's good rows of each band (float64 sums in the same order),
    as So2Sat's values path does, several times faster. ``lo``/``hi`` are the per row and band
    minimum and maximum. Full groups are reduced ``batch`` at a time (in ``work``, a float64
    (batch, bands, group * pixels) buffer, when given).
    """
    m, nb, npix = x.shape
    states: list[tuple[str, dict]] = []
    ng = -(-m // group)
    full = np.zeros(ng, bool)
    whole = m // group
    full[:whole] = good[:whole * group].reshape(whole, group).all(axis=1)
    g = 0
    while g < ng:
        if not full[g]:
            rows = np.flatnonzero(good[g * group:(g + 1) * group]) + g * group
            if len(rows):
                blk = x[g * group:(g + 1) * group] if len(rows) == min(group, m - g * group) else x[rows]
                for b, name in enumerate(names):
                    states.append((name, float_state(blk[:, b])))
            g += 1
            continue
        g1 = g
        while g1 < ng and full[g1] and g1 - g < batch:
            g1 += 1
        k = g1 - g
        shape = (batch, nb, group * npix)
        a64 = (work if work is not None and work.shape == shape else np.empty(shape, np.float64))[:k]
        rows_first = x[g * group:g1 * group].reshape(k, group, nb, npix)
        np.copyto(a64.reshape(k, nb, group, npix), rows_first.transpose(0, 2, 1, 3))  # band-major, as float64
        sums = a64.sum(axis=2).tolist()
        sumsq = _sumsq(a64).tolist()
        samples = a64[:, :, ::SAMPLE_STRIDE].copy()
        mins = lo[g * group:g1 * group].reshape(k, group, nb).min(axis=1).tolist()
        maxs = hi[g * group:g1 * group].reshape(k, group, nb).max(axis=1).tolist()
        count = group * npix
        for j in range(k):
            mn, mx, sj, qj, pj = mins[j], maxs[j], sums[j], sumsq[j], samples[j]
            for b, name in enumerate(names):
                lo_b, hi_b = mn[b], mx[b]
                if lo_b == 0:  # which zero (+0.0 or -0.0) a64.min() returns depends on its order: ask it
                    lo_b = float(a64[j, b].min())
                if hi_b == 0:
                    hi_b = float(a64[j, b].max())
                states.append((name, {"count": count, "sum": sj[b], "sumsq": qj[b], "min": lo_b, "max": hi_b,
                                      "sample": pj[b]}))
        g = g1
    return states


def _sumsq(a64: np.ndarray) -> np.ndarray:
    """np.dot(v, v) of every last-axis vector (np.vecdot calls the same BLAS dot per vector)."""
    if hasattr(np, "vecdot"):
        return np.vecdot(a64, a64)
    return np.array([[np.dot(v, v) for v in row] for row in a64])


def save_states(path: str | os.PathLike, stats: dict[str, BandStats]) -> None:
    """Writes every band's ``state()`` to one uncompressed ``.npz`` file (keys ``<band>::<field>``).

    Raises:
        OSError: ``path`` cannot be written.
    """
    arrays = {}
    for band, s in stats.items():
        for k, v in s.state().items():
            arrays[f"{band}::{k}"] = np.asarray(v)
    with open(path, "wb") as f:
        np.savez(f, **arrays)  # uncompressed: zlib on float samples cost ~70 us per So2Sat record


def load_states(path: str | os.PathLike) -> dict[str, dict]:
    """Reads a ``save_states`` file back as ``{band: state}`` for ``BandStats.merge_state``.

    Raises:
        OSError: ``path`` cannot be read.
        ValueError: a key without the ``<band>::<field>`` form, or not an ``.npz`` file.
    """
    out: dict[str, dict] = {}
    with np.load(path) as z:
        for key in z.files:
            band, k = key.split("::")
            out.setdefault(band, {})[k] = z[key]
    return out
