"""``plot_decoded_behavior``: decoded against true behaviour, in SpikeInterface's widget style
(a :class:`~spikeinterface.widgets.base.BaseWidget` with a matplotlib backend)."""

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
