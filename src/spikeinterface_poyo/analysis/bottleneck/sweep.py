"""``bottleneck_curve``: one decoder trained through bottlenecks of every width, with its random
baselines, its ceilings and the behaviour-only reference, all scored on the same held-out time."""

from __future__ import annotations

import warnings

import numpy as np
from tqdm.auto import tqdm

from ...core.behavior import Behavior
from ...core.metrics import r2_per_dimension
from ...core.spikes import single_segment_tokens
from ...models.baselines.common import training_samples
from .controls import autoregressive_r2, circular_shift, draw_shift
from .curve import contiguous_blocks
from .decoders import TRAINING_KEYS, BottleneckDecoder, check_placement, decoder_template
from .result import BottleneckCurve

BASELINES = ("noise", "shifted")
CEILINGS = ("none", "identity")
#: What k counts, by placement of the bottleneck (recorded with every curve).
WIDTHS = {
    "learned": "channels of the input, z = W x + b with W learned (BrainBits' k)",
    "pca": "channels of the input, z = W x + b with W the first k principal axes (unsupervised)",
    "latent": "numbers per latent token of POYO (the width of its internal channel, not BrainBits' k)",
}


def default_ks(num_units: int) -> list[int]:
    """1, 2, 4, 8... below ``num_units``, then ``num_units``."""
    ks = [2**i for i in range(int(np.log2(num_units)) + 1) if 2**i < num_units]
    return [*ks, num_units]


def _widths(ks, default: int) -> np.ndarray:
    """``ks`` as an array of positive integers; :func:`default_ks` of ``default`` when None."""
    ks = np.array(default_ks(default)) if ks is None else np.atleast_1d(np.asarray(ks))
    if ks.size == 0 or not np.issubdtype(ks.dtype, np.integer) or (ks < 1).any():
        raise ValueError(f"ks must be positive integers (bottleneck widths), got {ks.tolist()}.")
    return ks


def checked_ks(ks, num_units: int) -> np.ndarray:
    """Sorted distinct widths; those above ``num_units`` clipped to it, with a warning."""
    ks = _widths(ks, num_units)
    if (ks > num_units).any():
        warnings.warn(
            f"ks {sorted(set(ks[ks > num_units].tolist()))} exceed the {num_units} units and are clipped to "
            f"{num_units} (a bottleneck cannot be wider than its input); pass ks <= {num_units} to silence this.",
            UserWarning,
            stacklevel=3,
        )
    return np.unique(np.minimum(ks, num_units))


def checked_latent_ks(ks, width: int) -> np.ndarray:
    """Sorted distinct widths of a latent squeeze, refused above POYO's width (not clipped: they
    are not widths of the input)."""
    ks = _widths(ks, width)
    if (ks > width).any():
        raise ValueError(
            f"ks {sorted(set(ks[ks > width].tolist()))} exceed POYO's width dim = {width}: a latent squeeze "
            f"maps each latent token to k <= {width} numbers. Take ks <= {width}."
        )
    return np.unique(ks)


def _json_params(template) -> dict:
    """The decoder's settings, JSON-ready: a POYO backbone by its architecture."""
    params = {k: v for k, v in template.get_params().items() if k != "device"}
    if params.get("model") is not None:
        params["model"] = params["model"].config
    return params


def _checked_names(names, allowed: tuple, what: str) -> list[str]:
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise ValueError(f"Unknown {what} {unknown}; choose from {list(allowed)}.")
    return names


def _run_settings(name: str, k: int | None, bottleneck: str) -> dict:
    """The bottleneck and inputs of one run: a curve point, a baseline (no bottleneck; noise, or
    spikes that the caller shifts) or a ceiling."""
    if name == "curve":
        return dict(k=k, bottleneck=bottleneck)
    if name.startswith("baseline:"):
        return dict(bottleneck="none", inputs="noise" if name == "baseline:noise" else "spikes")
    return dict(bottleneck=name.removeprefix("ceiling:"))


def bottleneck_curve(
    sorting,
    behavior: Behavior,
    decoder="gru",
    ks=None,
    seeds=(0, 1, 2),
    *,
    bottleneck: str = "learned",
    baselines=BASELINES,
    ceilings=CEILINGS,
    test_fraction: float = 0.3,
    n_blocks: int = 10,
    min_shift_s: float = 10.0,
    reference: bool = True,
    training: dict | None = None,
    device=None,
    progress_bar: bool = False,
) -> BottleneckCurve:
    """How much of the recording a decoder reads: its held-out R² through a linear bottleneck of
    width k (BrainBits, Mayo et al. 2024), for every k, next to random baselines and ceilings.

    Every run is trained on the first ``1 - test_fraction`` of the behaviour samples that overlap
    the spikes (its last part for early stopping) and scored on the rest. Each width k trains
    ``z_t = W x_t + b`` jointly with the decoder (see :class:`BottleneckDecoder`); the baselines
    and ceilings are trained the same way, with the same budget.

    Parameters
    ----------
    sorting : BaseSorting or SortingAnalyzer
        The spikes (one segment).
    behavior : Behavior
        The behaviour to decode, on the spikes' clock.
    decoder : {"gru", "mlp", "wiener", "poyo"}, an instance of one, or a POYO, default: "gru"
        The decoder, by name or as an instance whose settings are kept (WienerFilter,
        MLPDecoder, GRUDecoder, :class:`~.poyo.BinnedPOYO`). A POYO model or a fitted
        ``POYODecoder`` is the backbone of a ``BinnedPOYO``; to train only W and the channel
        embeddings of a pretrained POYO, pass ``BinnedPOYO(model=pretrained, freeze_backbone=True)``.
    ks : sequence of int or None
        Bottleneck widths; by default 1, 2, 4... and N. Widths above N are clipped to N (with a
        warning); for ``bottleneck="latent"`` they are at most POYO's width (dim) and by default
        1, 2, 4... dim.
    seeds : sequence of int, default: (0, 1, 2)
        Every run is repeated with each seed (initialisation, batches, dropout, noise, shift).
    bottleneck : {"learned", "pca", "latent"}, default: "learned"
        ``"pca"`` fixes W to the first k principal axes of the training inputs (unsupervised).
        ``"latent"`` (POYO only) has no W: every unit is read and each of POYO's latent tokens is
        squeezed to k numbers after its encoder. That k is the width of POYO's internal channel,
        a different quantity from BrainBits' k (the number of population directions read); the
        curve then has no maps.
    baselines : sequence of {"noise", "shifted"}
        ``"noise"``: uniform noise in place of every input (BrainBits' baseline); ``"shifted"``:
        the spikes circularly shifted by at least ``min_shift_s`` against the behaviour (the
        spikes' own statistics kept). The first one normalises by default.
    ceilings : sequence of {"none", "identity"}
        ``"none"``: the decoder without a bottleneck; ``"identity"``: k = N with W = I (for these
        decoders the same model, which checks the bottleneck's plumbing). The first one
        normalises by default.
    test_fraction : float, default: 0.3
        Last part of the samples held out for scoring.
    n_blocks : int, default: 10
        Contiguous blocks the test part is cut into for the bootstrap of :meth:`BottleneckCurve.k_at`.
    min_shift_s : float, default: 10
        Smallest circular shift of the ``"shifted"`` baseline, in seconds.
    reference : bool, default: True
        Also fit the behaviour-only autoregressive reference (ridge on the behaviour at the
        decoder's ``lags`` previous bins; never used to normalise).
    training : dict or None
        Changes to every run's training settings (see :data:`TRAINING_KEYS`), e.g.
        ``{"max_epochs": 20}``.
    device : str, torch.device or None
        Defaults to CUDA when available, else CPU.
    progress_bar : bool, default: False
        Show a progress bar over the runs.

    Returns
    -------
    BottleneckCurve
        Scores per width and seed, baselines, ceilings, reference, maps, the test predictions and
        their bootstrap blocks.

    Examples
    --------
    >>> curve = sip.bottleneck_curve(sorting, behavior, decoder="gru", ks=[1, 2, 4, 8], seeds=[0, 1, 2])
    >>> print(curve.k_at(0.9))
    >>> curve.plot()
    """
    template = decoder_template(decoder)  # a decoder that cannot take a bottleneck fails first
    if bottleneck not in WIDTHS:
        raise ValueError(f"bottleneck must be one of {list(WIDTHS)} for a curve, got {bottleneck!r}.")
    check_placement(template, bottleneck)
    baselines = _checked_names(baselines, BASELINES, "baselines")
    ceilings = _checked_names(ceilings, CEILINGS, "ceilings")
    seeds = [int(s) for s in np.atleast_1d(seeds)]
    if not seeds:
        raise ValueError("Give at least one seed.")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}.")
    tokens = single_segment_tokens(sorting)
    t, y = training_samples(tokens, behavior)  # behaviour that does not overlap the spikes fails here
    num_units = tokens.num_units
    ks = checked_latent_ks(ks, template.width) if bottleneck == "latent" else checked_ks(ks, num_units)
    cut = int(round(len(t) * (1 - test_fraction)))
    blocks = contiguous_blocks(len(t) - cut, n_blocks)
    train, test = (t[:cut], y[:cut]), (t[cut:], y[cut:])
    span = tokens.end_time - tokens.start_time
    shifts = {}
    if "shifted" in baselines:  # one shift per seed, drawn before any training (a short recording fails early)
        shifts = {s: draw_shift(span, min_shift_s, np.random.default_rng([s, 17])) for s in seeds}  # own stream

    runs = [("curve", int(k)) for k in ks] + [(f"baseline:{b}", None) for b in baselines]
    runs += [(f"ceiling:{c}", None) for c in ceilings]
    predictions = {name: [] for name, _ in runs}
    maps = {int(k): [] for k in ks}
    bar = tqdm(total=len(runs) * len(seeds), desc="bottleneck runs", disable=not progress_bar)
    for seed in seeds:
        for name, k in runs:
            run = _run_settings(name, k, bottleneck)
            model = BottleneckDecoder(template, training=training, seed=seed, device=device, **run)
            source = circular_shift(tokens, shifts[seed]) if name == "baseline:shifted" else tokens
            model.fit_samples(source, *train)
            predictions[name].append(model.predict_samples(source, test[0]))
            if name == "curve" and model.map_ is not None:  # the latent squeeze has no map on the units
                maps[k].append(model.map_)
            bar.update(1)
    bar.close()

    stacked = {name: np.stack(values) for name, values in predictions.items()}
    by_seed = stacked.pop("curve")  # (S * K, T, D), seed-major
    curve = np.stack([by_seed[i :: len(ks)] for i in range(len(ks))])  # (K, S, T, D)

    def score(p):
        return float(np.nanmean(r2_per_dimension(test[1], p)))

    return BottleneckCurve(
        decoder=getattr(template, "label", None) or template.family,
        ks=ks,
        seeds=seeds,
        unit_ids=[u.removeprefix(f"{tokens.session_id}/") for u in tokens.unit_ids],
        scores=np.array([[score(p) for p in curve[i]] for i in range(len(ks))]),
        baselines={b: np.array([score(p) for p in stacked[f"baseline:{b}"]]) for b in baselines},
        ceilings={c: np.array([score(p) for p in stacked[f"ceiling:{c}"]]) for c in ceilings},
        # the reference reads as many past bins of behaviour as the decoder reads of spikes
        reference=autoregressive_r2(behavior, train, test, template.lags, template.bin_size) if reference else np.nan,
        maps={k: np.stack(v) for k, v in maps.items() if v},
        y_test=test[1],
        predictions={"curve": curve, **stacked},
        blocks=blocks,
        settings=dict(
            bottleneck=bottleneck,
            width=WIDTHS[bottleneck],
            test_fraction=test_fraction,
            n_blocks=n_blocks,
            train_samples=int(cut),
            test_samples=int(len(t) - cut),
            split_time_s=float(t[cut]),
            shifts_s={int(s): v for s, v in shifts.items()},
            decoder_params=_json_params(template),
            training={key: getattr(model, key) for key in TRAINING_KEYS},
        ),
    )
