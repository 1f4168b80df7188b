"""The masking schemes of MtM and its NDT1 baseline, shared by the families that learn by
masking (MtM on binned counts, POYO on spike tokens): which (bin, unit) entries of a window are
hidden from the model and which are scored.

MtM zeroes the hidden counts (every selected entry zeroed, the paper's configuration); POYO
drops the hidden spike tokens. The Poisson loss is taken on the scored entries only.

- ``temporal`` (NDT1): a fraction of the bins, every unit; bidirectional attention.
- ``neuron``: a fraction of the units, in every bin.
- ``causal``: a fraction of the bins, with causal attention, so each bin is predicted from the
  past only. A model without causal attention (POYO's encoder sees the whole window) draws it
  with ``future=True``: the last bins of the window, from a random cut on, hidden and scored.
- ``intra_region``: everything outside one region hidden, and a fraction of that region's units;
  those are scored (predicting a neuron from its own region).
- ``inter_region``: one whole region hidden and scored (predicting a region from the others).

A session's regions are its ``brain_area`` labels with at least ``min_units`` units, labels such
as "unknown", "root" or "void" excluded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

SCHEMES = ("temporal", "neuron", "causal", "intra_region", "inter_region")
REGION_SCHEMES = ("intra_region", "inter_region")
#: The schemes MtM alternates between (the paper's multi-task mask); ``temporal`` is NDT1's.
MTM_SCHEMES = ("neuron", "causal", "intra_region", "inter_region")
#: Region labels that name no region.
UNLABELLED = frozenset({"", "unknown", "root", "void", "nan", "none", "n/a", "na"})
MIN_REGION_UNITS = 5


def session_regions(brain_area, min_units: int = MIN_REGION_UNITS) -> dict[str, np.ndarray]:
    """Region name -> indices of its units, for the labels that count as regions."""
    if brain_area is None:
        return {}
    labels = np.asarray(brain_area).astype(str)
    regions = {}
    for name in sorted(set(labels)):
        units = np.flatnonzero(labels == name)
        if name.strip().lower() not in UNLABELLED and len(units) >= min_units:
            regions[str(name)] = units
    return regions


def resolve_schemes(schemes) -> tuple[str, ...]:
    """``"mtm"`` (the multi-task mask), ``"all"``, one scheme name or a list, checked."""
    if isinstance(schemes, str):
        schemes = {"mtm": MTM_SCHEMES, "all": SCHEMES}.get(schemes, (schemes,))
    schemes = tuple(dict.fromkeys(schemes))
    unknown = [s for s in schemes if s not in SCHEMES]
    if unknown or not schemes:
        raise ValueError(f"Unknown masking schemes {unknown}; choose among {list(SCHEMES)} or 'mtm'.")
    return schemes


def session_schemes(schemes: tuple[str, ...], regions: dict, session_id: str) -> tuple[str, ...]:
    """The schemes a session can be trained with: region schemes need two regions or more.

    A session with fewer falls back to ``neuron`` + ``causal`` for the region schemes, and says
    so; asking only for region schemes there is an error.
    """
    if len(regions) >= 2 or not any(s in REGION_SCHEMES for s in schemes):
        return schemes
    kept = tuple(s for s in schemes if s not in REGION_SCHEMES)
    if not kept:
        found = f"regions {sorted(regions)}" if regions else "no region labels"
        raise ValueError(
            f"Session {session_id!r} has {found} (a region needs {MIN_REGION_UNITS} or more units with a "
            f"brain_area label other than unknown/root/void); the {' and '.join(schemes)} scheme(s) need two "
            "regions. Set the "
            "sorting's brain_area property (sorting.set_property('brain_area', labels)) or use schemes='mtm', "
            "which falls back to neuron + causal masking."
        )
    fallback = tuple(dict.fromkeys(kept + ("neuron", "causal")))
    logger.warning(
        "Session %s has fewer than two regions (%s); it is trained with %s instead of the region schemes.",
        session_id, sorted(regions) or "no brain_area labels", list(fallback),
    )  # fmt: skip
    return fallback


@dataclass
class Mask:
    """One batch's mask.

    Attributes
    ----------
    scheme : str
        The scheme (and so the prompt) it was drawn for.
    hidden : np.ndarray
        (B, T, N) bool: entries zeroed in the input.
    scored : np.ndarray
        (B, T, N) bool: entries in the loss (a subset of ``hidden``).
    """

    scheme: str
    hidden: np.ndarray
    scored: np.ndarray

    @property
    def causal(self) -> bool:
        """Whether attention must be causal (no bin sees a later one)."""
        return self.scheme == "causal"


def _choose(rng, batch: int, n: int, k: int) -> np.ndarray:
    """(batch, n) bool with exactly ``k`` True per row, at random."""
    chosen = np.zeros((batch, n), dtype=bool)
    order = np.argsort(rng.random((batch, n)), axis=1)[:, :k]
    np.put_along_axis(chosen, order, True, axis=1)
    return chosen


def draw_mask(
    scheme: str,
    shape: tuple[int, int, int],
    regions: dict[str, np.ndarray],
    rng: np.random.Generator,
    ratio: float = 0.3,
    region: str | None = None,
    future: bool = False,
) -> Mask:
    """Draw a mask of ``scheme`` for a (B, T, N) batch.

    Parameters
    ----------
    scheme : str
        One of :data:`SCHEMES`.
    shape : (int, int, int)
        Windows, bins and units.
    regions : dict
        Region -> unit indices (:func:`session_regions`); used by the region schemes.
    rng : np.random.Generator
        Randomness.
    ratio : float, default: 0.3
        Fraction of bins (temporal, causal) or units (neuron, intra_region) masked; at least one.
    region : str or None
        The region of a region scheme; one at random per window by default.
    future : bool, default: False
        ``causal`` as a contiguous future: each window's last bins, between one and twice
        ``ratio`` of them (``ratio`` on average), hidden and scored.
    """
    batch, num_bins, num_units = shape
    hidden = np.zeros(shape, dtype=bool)
    if scheme == "causal" and future:
        longest = max(1, min(num_bins - 1, int(round(2 * ratio * num_bins))))
        cut = num_bins - rng.integers(1, longest + 1, batch)
        hidden[:] = (np.arange(num_bins)[None, :] >= cut[:, None])[:, :, None]
        return Mask(scheme, hidden, hidden.copy())
    if scheme in ("temporal", "causal"):
        bins = _choose(rng, batch, num_bins, max(1, int(round(ratio * num_bins))))
        hidden[:] = bins[:, :, None]
        return Mask(scheme, hidden, hidden.copy())
    if scheme == "neuron":
        units = _choose(rng, batch, num_units, max(1, int(round(ratio * num_units))))
        hidden[:] = units[:, None, :]
        return Mask(scheme, hidden, hidden.copy())
    if scheme not in REGION_SCHEMES:
        raise ValueError(f"Unknown masking scheme {scheme!r}; choose among {list(SCHEMES)}.")
    if len(regions) < 2:
        raise ValueError(f"The {scheme} scheme needs a session with two regions or more, got {sorted(regions)}.")
    names = list(regions)
    if region is not None and region not in regions:
        raise ValueError(f"Region {region!r} is not one of the session's regions {names}.")
    scored = np.zeros(shape, dtype=bool)
    for b in range(batch):
        units = regions[region if region is not None else names[rng.integers(len(names))]]
        if scheme == "inter_region":
            hidden[b, :, units] = True
            scored[b, :, units] = True
        else:
            hidden[b] = True
            hidden[b, :, units] = False
            masked = units[_choose(rng, 1, len(units), max(1, int(round(ratio * len(units)))))[0]]
            hidden[b, :, masked] = True
            scored[b, :, masked] = True
    return Mask(scheme, hidden, scored)
