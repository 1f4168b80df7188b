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
