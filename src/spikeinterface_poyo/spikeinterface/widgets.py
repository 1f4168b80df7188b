"""``plot_decoded_behavior``, ``plot_trial_clusters`` and ``plot_bottleneck_curve``, in
SpikeInterface's widget style (a :class:`~spikeinterface.widgets.base.BaseWidget` with a matplotlib
backend)."""

from __future__ import annotations

import numpy as np
from spikeinterface.widgets.base import BaseWidget, to_attr

from ..core.metrics import r2_score


class DecodedBehaviorWidget(BaseWidget):
    """Plot decoded behaviour, one panel per dimension, with the true behaviour when given.

    Parameters
    ----------
    decoded : Behavior
        The decoded series (from :func:`~spikeinterface_poyo.decode_behavior`, an analyzer's
        ``poyo_decoding`` extension or :func:`~spikeinterface_poyo.read_predictions_from_nwb`).
    true : Behavior or None, default: None
        The true series at the same timestamps; each panel's title then gives its R².
    time_range : (float, float) or None, default: None
        Seconds to show; the first 30 s of the decoded series by default.
    label : str, default: "decoded"
        Legend label of the decoded series.
    backend : str or None, default: None
        SpikeInterface widget backend (``"matplotlib"``).
    **backend_kwargs
        Passed to the backend (``figure``, ``axes``, ``figsize``...).
    """

    def __init__(self, decoded, true=None, time_range=None, label: str = "decoded", backend=None, **backend_kwargs):
        if true is not None and true.num_dimensions != decoded.num_dimensions:
            raise ValueError(
                f"true has {true.num_dimensions} dimensions and decoded has {decoded.num_dimensions}; "
                "plot the series the model decodes."
            )
        if time_range is None:
            time_range = (decoded.start_time, min(decoded.end_time, decoded.start_time + 30.0))
        scores = r2_score(true, decoded)["r2"] if true is not None else None
        data_plot = dict(decoded=decoded, true=true, time_range=tuple(time_range), label=label, scores=scores)
        BaseWidget.__init__(self, data_plot, backend=backend, **backend_kwargs)

    def plot_matplotlib(self, data_plot, **backend_kwargs):
        from spikeinterface.widgets.utils_matplotlib import make_mpl_figure

        dp = to_attr(data_plot)
        decoded, true = dp.decoded, dp.true
        num = decoded.num_dimensions
        if backend_kwargs.get("axes") is None and backend_kwargs.get("ax") is None:
            backend_kwargs["num_axes"], backend_kwargs["ncols"] = num, 1
            backend_kwargs["figsize"] = backend_kwargs.get("figsize") or (10, 2.2 * num)
        self.figure, self.axes, self.ax = make_mpl_figure(**backend_kwargs)
        start, stop = dp.time_range
        axes = np.asarray(self.axes).ravel()
        for d, ax in enumerate(axes[:num]):
            if true is not None:
                show = (true.timestamps >= start) & (true.timestamps < stop)
                ax.plot(true.timestamps[show], true.values[show, d], color="0.2", lw=1.2, label="true")
            show = (decoded.timestamps >= start) & (decoded.timestamps < stop)
            ax.plot(decoded.timestamps[show], decoded.values[show, d], color="tab:orange", lw=1.2, label=dp.label)
            name = decoded.dimension_names[d]
            ax.set_ylabel(f"{name} ({decoded.unit})")
            series = true.name if true is not None else decoded.name
            title = f"{series} {name}" + (f": R² = {dp.scores[d]:.3f}" if dp.scores is not None else "")
            ax.set_title(title, fontsize=9, loc="left")
        axes[num - 1].set_xlabel("time (s)")
        axes[0].legend(loc="upper right", fontsize=8)
        self.figure.tight_layout()


plot_decoded_behavior = DecodedBehaviorWidget


class TrialClustersWidget(BaseWidget):
    """Trials clustered by their dynamics (:func:`~spikeinterface_poyo.cluster_trials`): each trial's
    trajectory in the first two output dimensions coloured by its system, each system's impulse
    response (first output to each input), and the validation BIC against the number of systems.

    Parameters
    ----------
    clusters : TrialClusters
        The result of :func:`~spikeinterface_poyo.cluster_trials`.
    num_lags : int, default: 10
        Steps of impulse response to draw.
    backend : str or None, default: None
        SpikeInterface widget backend (``"matplotlib"``).
    **backend_kwargs
        Passed to the backend (``figure``, ``axes``, ``figsize``...).
    """

    def __init__(self, clusters, num_lags: int = 10, backend=None, **backend_kwargs):
        data_plot = dict(clusters=clusters, num_lags=num_lags)
        BaseWidget.__init__(self, data_plot, backend=backend, **backend_kwargs)

    def plot_matplotlib(self, data_plot, **backend_kwargs):
        import matplotlib.pyplot as plt
        from spikeinterface.widgets.utils_matplotlib import make_mpl_figure

        dp = to_attr(data_plot)
        res = dp.clusters
        if backend_kwargs.get("axes") is None and backend_kwargs.get("ax") is None:
            backend_kwargs["num_axes"], backend_kwargs["ncols"] = 3, 3
            backend_kwargs["figsize"] = backend_kwargs.get("figsize") or (13, 3.8)
        self.figure, self.axes, self.ax = make_mpl_figure(**backend_kwargs)
        ax_traj, ax_imp, ax_bic = np.asarray(self.axes).ravel()[:3]
        colors = plt.get_cmap("tab10")
        for y, k in zip(res.outputs, res.labels):
            second = y[:, 1] if y.shape[1] > 1 else np.arange(len(y)) * res.bin_size
            ax_traj.plot(y[:, 0], second, color=colors(k % 10), lw=0.7, alpha=0.6)
        ax_traj.set_xlabel("output 1")
        ax_traj.set_ylabel("output 2" if res.outputs[0].shape[1] > 1 else "time in trial (s)")
        ax_traj.set_title(f"{len(res.labels)} trials, {res.n_components} systems", fontsize=9, loc="left")
        markov = res.model.markov_parameters(dp.num_lags)  # (K, L, p, m)
        lags = np.arange(dp.num_lags) * res.bin_size
        for k in range(markov.shape[0]):
            for j in range(markov.shape[3]):
                ax_imp.plot(lags, markov[k, :, 0, j], color=colors(k % 10), ls=["-", "--", ":", "-."][j % 4])
        ax_imp.set_xlabel("lag (s)")
        ax_imp.set_ylabel("impulse response, output 1")
        ax_imp.set_title("systems (line style: input)" if markov.shape[3] else "no inputs", fontsize=9, loc="left")
        if res.bic:
            ks = sorted(res.bic)
            ax_bic.plot(ks, [res.bic[k] for k in ks], "o-", color="0.2")
            ax_bic.axvline(res.n_components, color="tab:red", ls="--", lw=1)
        ax_bic.set_xlabel("systems K")
        ax_bic.set_ylabel("validation BIC")
        self.figure.tight_layout()


plot_trial_clusters = TrialClustersWidget


class BottleneckCurveWidget(BaseWidget):
    """A bottleneck curve (:func:`~spikeinterface_poyo.bottleneck_curve`) as BrainBits draws it:
    held-out R² against the bottleneck width k on a log axis, each seed faint and their mean bold,
    the random baselines and the ceilings as dashed lines, the behaviour-only autoregressive
    reference dotted.

    Parameters
    ----------
    curve : BottleneckCurve
        The result of :func:`~spikeinterface_poyo.bottleneck_curve`.
    normalised : bool, default: False
        Plot p(k), 0 at the baseline and 1 at the ceiling, instead of R² (the lines are then 0
        and 1, and ``q`` is marked).
    baseline, ceiling : str or None, default: None
        Which baseline and ceiling normalise the curve (see :meth:`BottleneckCurve.p`).
    q : float or None, default: 0.9
        Mark k at this fraction of the way (the estimate, without its bootstrap); None: no mark.
    backend : str or None, default: None
        SpikeInterface widget backend (``"matplotlib"``).
    **backend_kwargs
        Passed to the backend (``figure``, ``axes``, ``figsize``...).
    """

    def __init__(self, curve, normalised: bool = False, baseline=None, ceiling=None, q: float | None = 0.9,
                 backend=None, **backend_kwargs):  # fmt: skip
        data_plot = dict(curve=curve, normalised=normalised, baseline=baseline, ceiling=ceiling, q=q)
        BaseWidget.__init__(self, data_plot, backend=backend, **backend_kwargs)

    def plot_matplotlib(self, data_plot, **backend_kwargs):
        from spikeinterface.widgets.utils_matplotlib import make_mpl_figure

        dp = to_attr(data_plot)
        res = dp.curve
        if backend_kwargs.get("axes") is None and backend_kwargs.get("ax") is None:
            backend_kwargs["figsize"] = backend_kwargs.get("figsize") or (5.5, 4)
        self.figure, self.axes, self.ax = make_mpl_figure(**backend_kwargs)
        ax = self.ax
        if dp.normalised:
            seeds, mean = res.p_per_seed(dp.baseline, dp.ceiling), res.p(None, dp.baseline, dp.ceiling)
            lines = [("baseline", 0.0, "tab:red"), ("ceiling", 1.0, "0.2")]
        else:
            seeds, mean = res.scores, res.scores.mean(axis=1)
            reds, greys = ["tab:red", "tab:orange"], ["0.2", "0.55"]
            lines = [(f"baseline: {n}", v.mean(), c) for (n, v), c in zip(res.baselines.items(), reds)]
            lines += [(f"ceiling: {n}", v.mean(), c) for (n, v), c in zip(res.ceilings.items(), greys)]
        for j in range(seeds.shape[1]):
            ax.plot(res.ks, seeds[:, j], "o", color="tab:blue", alpha=0.3, ms=3)
        placement = res.settings.get("bottleneck", "learned")
        label = f"{res.decoder}, {'latent squeeze' if placement == 'latent' else placement + ' W'}"
        ax.plot(res.ks, mean, "o-", color="tab:blue", lw=1.8, label=label)
        for label, value, color in lines:
            ax.axhline(value, ls="--", lw=1.2, color=color, label=label)
        if not dp.normalised and np.isfinite(res.reference):
            ax.axhline(res.reference, ls=":", lw=1.2, color="tab:green", label="behaviour-only AR (reference)")
        if dp.q is not None and res.baselines and res.ceilings:
            k = res.k_at(dp.q, dp.baseline, dp.ceiling, n_boot=0).k
            if np.isfinite(k):
                ax.axvline(k, ls=":", lw=1, color="tab:blue")
                ax.set_title(f"k_{round(100 * dp.q)} = {k:.3g}", fontsize=9, loc="left")
        ax.set_xscale("log")
        ax.set_xticks(res.ks)
        ax.set_xticklabels([str(int(k)) for k in res.ks])
        ax.set_xlabel("numbers per latent token k" if placement == "latent" else "bottleneck width k")
        ax.set_ylabel("p(k)" if dp.normalised else "held-out R²")
        ax.legend(fontsize=7, loc="lower right")
        self.figure.tight_layout()


plot_bottleneck_curve = BottleneckCurveWidget
