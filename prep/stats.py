"""Per-band pixel statistics that merge exactly across shards.

Integer bands (uint8/uint16) keep a full histogram, so mean, std, min, max and percentiles
are exact whatever the sharding. Float bands keep sums, extremes and a deterministic strided
sample of pixels for the percentiles (approximate, documented in the manifest).
"""
from __future__ import annotations

import numpy as np

PERCENTILES = (1, 2, 5, 25, 50, 75, 95, 98, 99)
_SAMPLE_STRIDE = 97
_MAX_SAMPLE = 1 << 20  # float bands: the percentile sample is thinned to at most ~1M values  # float bands: every 97th pixel of every record feeds the percentile sample


class BandStats:
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
        a = np.asarray(pixels).reshape(-1)
        self.count += a.size
        if self.exact:
            counts = np.bincount(a)  # up to the largest value only: far cheaper than the full 65,536 bins
            self.hist[: counts.size] += counts
        elif a.size:
            a64 = a.astype(np.float64)
            self.sum += float(a64.sum())
            self.sumsq += float(np.dot(a64, a64))
            self.min = min(self.min, float(a64.min()))
            self.max = max(self.max, float(a64.max()))
            self.samples.append(a64[::_SAMPLE_STRIDE].copy())
            self._sampled += self.samples[-1].size
            if self._sampled > 2 * _MAX_SAMPLE:
                self._thin()

    # --- persistence and merging (sidecar files of finished shards) ---
    def state(self) -> dict:
        if self.exact:
            nz = np.flatnonzero(self.hist)
            return {"count": self.count, "bins": nz, "counts": self.hist[nz]}
        sample = np.concatenate(self.samples) if self.samples else np.empty(0)
        return {"count": self.count, "sum": self.sum, "sumsq": self.sumsq, "min": self.min,
                "max": self.max, "sample": sample}

    def merge_state(self, st: dict) -> None:
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


def save_states(path, stats: dict[str, BandStats]) -> None:
    arrays = {}
    for band, s in stats.items():
        for k, v in s.state().items():
            arrays[f"{band}::{k}"] = np.asarray(v)
    with open(path, "wb") as f:
        np.savez(f, **arrays)  # uncompressed: zlib on float samples cost ~70 us per So2Sat record


def load_states(path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    with np.load(path) as z:
        for key in z.files:
            band, k = key.split("::")
            out.setdefault(band, {})[k] = z[key]
    return out
