"""plot_decoded_behavior: a SpikeInterface-style widget of decoded against true behaviour."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import spikeinterface_poyo as sip  # noqa: E402


def _series(offset=0.0, name="velocity"):
    t = np.arange(0.0, 60.0, 0.02)
    return sip.Behavior(t, np.stack([np.sin(t), np.cos(t)], axis=1) + offset, name=name, unit="cm/s")


def test_one_panel_per_dimension_with_r2_titles_and_the_time_range():
    true, decoded = _series(), _series(0.1, "decoded_velocity")
    widget = sip.plot_decoded_behavior(decoded, true=true, time_range=(10.0, 20.0), backend="matplotlib")
    axes = np.asarray(widget.axes).ravel()
    assert len(axes) == 2
    expected = sip.r2_score(true, decoded)["r2"]
    assert axes[0].get_title(loc="left") == f"velocity x: R² = {expected[0]:.3f}"
    times = axes[1].lines[0].get_xdata()
    assert times.min() >= 10.0 and times.max() < 20.0
    assert [line.get_label() for line in axes[0].lines] == ["true", "decoded"]
    assert axes[0].get_ylabel() == "x (cm/s)"


def test_without_truth_it_plots_the_first_30_seconds_and_refuses_other_dimensions():
    decoded = _series(name="decoded_velocity")
    widget = sip.plot_decoded_behavior(decoded, backend="matplotlib")
    axes = np.asarray(widget.axes).ravel()
    assert axes[0].get_title(loc="left") == "decoded_velocity x"
    assert axes[0].lines[0].get_xdata().max() < 30.0
    one_d = sip.Behavior(decoded.timestamps, decoded.values[:, 0], name="velocity")
    with pytest.raises(ValueError, match="true has 1 dimensions and decoded has 2"):
        sip.plot_decoded_behavior(decoded, true=one_d)
