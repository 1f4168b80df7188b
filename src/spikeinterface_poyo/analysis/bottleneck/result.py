"""``BottleneckCurve``: what :func:`~.sweep.bottleneck_curve` returns, and how it is read."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .curve import bootstrap_r2, k_reaching, normalise


@dataclass
class KEstimate:
    """The smallest k reaching a fraction ``q`` of the way from baseline to ceiling, with a
    bootstrap interval (NaN without one; ``high`` is inf when some replicates never reach ``q``)."""

    q: float
    k: float
    low: float = np.nan
    high: float = np.nan
    level: float = 0.95

    def __str__(self) -> str:
        interval = "" if np.isnan(self.low) else f" [{self.low:.3g}, {self.high:.3g}]"
        return f"k_{round(100 * self.q)} = {self.k:.3g}{interval}"


@dataclass
class BottleneckCurve:
    """Held-out R² of one decoder through a bottleneck of width k, with its baselines and ceilings.

    Attributes
    ----------
    decoder : str
        The decoder (``"wiener"``, ``"mlp"``, ``"gru"``, ``"poyo"``).
    ks : np.ndarray
        (K,) bottleneck widths, increasing.
    seeds : list of int
        The seeds every run was repeated with.
    unit_ids : list of str
        The N units, in the order of the maps' columns.
    scores : np.ndarray
        (K, S) test R² (mean over behaviour dimensions) per width and seed.
    baselines : dict of str to np.ndarray
        (S,) test R² of the random baselines: ``"noise"`` (uniform noise in place of the inputs) and
        ``"shifted"`` (spikes circularly shifted against the behaviour), each retrained like the runs.
    ceilings : dict of str to np.ndarray
        (S,) test R² of ``"none"`` (the decoder without a bottleneck, the same budget) and
        ``"identity"`` (k = N, W = I).
    reference : float
        Test R² of the behaviour-only autoregressive model (a reference line, never used to
        normalise); NaN when not computed.
    maps : dict of int to np.ndarray
        Per k, the (S, k, N) maps W on the standardised inputs (none for POYO's latent squeeze).
    y_test, predictions
        The test behaviour (T, D) and every run's predictions: ``predictions["curve"]`` is
        (K, S, T, D), ``predictions["baseline:noise"]``, ``predictions["ceiling:none"]``... (S, T, D).
    blocks : np.ndarray
        (T,) contiguous bootstrap block of each test sample.
    settings : dict
        How the curve was computed (bottleneck, what its k counts as ``width``, split, training,
        shift...).
    """

    decoder: str
    ks: np.ndarray
    seeds: list
    unit_ids: list
    scores: np.ndarray
    baselines: dict
    ceilings: dict
    reference: float
    maps: dict
    y_test: np.ndarray
    predictions: dict
    blocks: np.ndarray
    settings: dict = field(default_factory=dict)

    # ---- the curve --------------------------------------------------------------------------
    def _pick(self, kind: str, name: str | None) -> str:
        table = self.baselines if kind == "baseline" else self.ceilings
        if not table:
            raise ValueError(f"This curve was computed without a {kind}; compute it with one to normalise.")
        if name is None:
            return next(iter(table))  # the first one asked for
        if name not in table:
            raise ValueError(f"No {kind} {name!r} in this curve; it has {list(table)}.")
        return name

    def p(self, k: int | None = None, baseline: str | None = None, ceiling: str | None = None):
        """The normalised curve p(k) = (R²(k) - R²_baseline) / (R²_ceiling - R²_baseline), from the
        seed means: 0 at the baseline, 1 at the ceiling.

        Parameters
        ----------
        k : int or None
            A width of the curve; None gives the whole (K,) curve.
        baseline, ceiling : str or None
            Which baseline and ceiling normalise it (by default the first computed: ``"noise"``
            and ``"none"`` unless asked otherwise).
        """
        base = self.baselines[self._pick("baseline", baseline)].mean()
        ceil = self.ceilings[self._pick("ceiling", ceiling)].mean()
        curve = normalise(self.scores.mean(axis=1), base, ceil)
        if k is None:
            return curve
        where = np.flatnonzero(self.ks == k)
        if len(where) == 0:
            raise ValueError(f"k = {k} is not on this curve; its widths are {self.ks.tolist()}.")
        return float(curve[where[0]])

    def p_per_seed(self, baseline: str | None = None, ceiling: str | None = None) -> np.ndarray:
        """(K, S) p(k) of each seed, normalised by that seed's baseline and ceiling."""
        base = self.baselines[self._pick("baseline", baseline)]
        ceil = self.ceilings[self._pick("ceiling", ceiling)]
        return normalise(self.scores, base[None], ceil[None])

    def k_at(self, q: float = 0.9, baseline: str | None = None, ceiling: str | None = None, n_boot: int = 1000,
             level: float = 0.95, seed: int = 0) -> KEstimate:  # fmt: skip
        """The smallest k at which p(k) reaches ``q``, interpolated in log k, with a bootstrap interval.

        Each replicate draws the contiguous test blocks and the seeds with replacement, rescores
        every run (curve, baseline and ceiling alike) on the drawn blocks and recomputes p and k.

        Parameters
        ----------
        q : float, default: 0.9
            Fraction of the way from baseline to ceiling.
        baseline, ceiling : str or None
            As in :meth:`p`.
        n_boot : int, default: 1000
            Bootstrap replicates; 0 gives the estimate alone.
        level : float, default: 0.95
            Coverage of the interval.
        seed : int, default: 0
            Seed of the bootstrap draws.

        Returns
        -------
        KEstimate
            ``k`` (``ks[0]`` when the narrowest width already reaches ``q``, NaN when no width does),
            ``low`` and ``high``.
        """
        if not 0 < q <= 1:
            raise ValueError(f"q must be in (0, 1], got {q}.")
        baseline, ceiling = self._pick("baseline", baseline), self._pick("ceiling", ceiling)
        estimate = KEstimate(q, k_reaching(self.ks, self.p(None, baseline, ceiling), q), level=level)
        if n_boot <= 0:
            return estimate
        runs = np.concatenate([self.predictions["curve"], self.predictions[f"baseline:{baseline}"][None],
                               self.predictions[f"ceiling:{ceiling}"][None]])  # fmt: skip
        n_blocks = int(self.blocks.max()) + 1
        r2 = bootstrap_r2(self.y_test, runs, self.blocks, n_blocks, n_boot, np.random.default_rng(seed))
        num = len(self.ks)
        p = normalise(r2[:, :num], r2[:, num : num + 1], r2[:, num + 1 :])
        ks = np.array([k_reaching(self.ks, row, q) for row in p])
        ks = np.where(np.isnan(ks), np.inf, ks)  # never reached: beyond every width
        tail = (1 - level) / 2
        estimate.low, estimate.high = np.quantile(ks, [tail, 1 - tail], method="inverted_cdf")
        return estimate

    # ---- the maps ---------------------------------------------------------------------------
    def _map(self, k: int) -> np.ndarray:
        if not self.maps and self.settings.get("bottleneck") == "latent":
            raise ValueError("A latent-squeeze curve has no maps on the units: it squeezes POYO's latent tokens.")
        if k not in self.maps:
            raise ValueError(f"No map of width {k}; the curve has maps for k in {sorted(self.maps)}.")
        return self.maps[k]

    def unit_importance(self, k: int):
        """Each unit's share in the width-``k`` map: column norms of W, scaled to sum to 1 per seed
        (W's scale is arbitrary, the decoder after it undoes it), then averaged over seeds.

        Returns
        -------
        pandas.Series
            Indexed by unit id.
        """
        import pandas as pd

        norms = np.linalg.norm(self._map(k), axis=1)  # (S, N)
        share = norms / norms.sum(axis=1, keepdims=True)
        return pd.Series(share.mean(axis=0), index=self.unit_ids, name=f"importance_k{k}")

    def map_angles(self, k: int, directions) -> np.ndarray:
        """(S, m) principal angles in degrees, smallest first, between the span of each seed's
        width-``k`` map (its rows, in standardised input space) and the span of ``directions``
        ((N, q) columns); m = min(k, q)."""
        from scipy.linalg import subspace_angles

        directions = np.asarray(directions, dtype=np.float64)
        if directions.ndim != 2 or directions.shape[0] != len(self.unit_ids):
            raise ValueError(f"directions must be (N, q) with N = {len(self.unit_ids)} units, got {directions.shape}.")
        return np.stack([np.sort(np.degrees(subspace_angles(w.T, directions))) for w in self._map(k)])

    # ---- reporting --------------------------------------------------------------------------
    def summary(self, qs=(0.5, 0.9, 0.95), n_boot: int = 1000) -> dict:
        """JSON-ready: k at each q with its interval, p(1), p(2) and p(3) where on the curve, the
        seed means of the baselines, the ceilings and the reference."""
        out = {}
        for q in qs:
            estimate = self.k_at(q, n_boot=n_boot)
            out[f"k_{round(100 * q)}"] = {"k": estimate.k, "low": float(estimate.low), "high": float(estimate.high)}
        for k in (1, 2, 3):
            if k in self.ks:
                out[f"p({k})"] = self.p(k)
        out["baselines"] = {name: float(v.mean()) for name, v in self.baselines.items()}
        out["ceilings"] = {name: float(v.mean()) for name, v in self.ceilings.items()}
        out["reference"] = float(self.reference)
        out["r2"] = {int(k): float(v) for k, v in zip(self.ks, self.scores.mean(axis=1))}
        return out

    def to_dataframe(self):
        """One row per run: ``kind`` (bottleneck, baseline, ceiling, reference), ``name``, ``k``
        (NaN for the lines), ``seed`` and ``r2``; bottleneck rows also have ``p``, normalised by
        the same seed's first baseline and first ceiling."""
        import pandas as pd

        rows = []
        p = self.p_per_seed() if self.baselines and self.ceilings else np.full(self.scores.shape, np.nan)
        name = self.settings.get("bottleneck", "learned")
        for i, k in enumerate(self.ks):
            for j, seed in enumerate(self.seeds):
                rows.append(dict(kind="bottleneck", name=name, k=int(k), seed=seed, r2=float(self.scores[i, j]),
                                 p=float(p[i, j])))  # fmt: skip
        for kind, table in (("baseline", self.baselines), ("ceiling", self.ceilings)):
            for name, values in table.items():
                k = len(self.unit_ids) if name == "identity" else np.nan
                rows += [dict(kind=kind, name=name, k=k, seed=s, r2=float(v)) for s, v in zip(self.seeds, values)]
        if np.isfinite(self.reference):
            rows.append(dict(kind="reference", name="autoregressive", k=np.nan, seed=np.nan, r2=self.reference))
        return pd.DataFrame(rows, columns=["kind", "name", "k", "seed", "r2", "p"])

    def plot(self, **kwargs):
        """The curve on a log-k axis with the baselines and ceilings dashed
        (:func:`spikeinterface_poyo.plot_bottleneck_curve`)."""
        from ...spikeinterface.widgets import plot_bottleneck_curve

        return plot_bottleneck_curve(self, **kwargs)
