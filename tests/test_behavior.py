import numpy as np
import pytest
from conftest import shared_file

import spikeinterface_poyo as sip


def test_read_timeseries_and_spatialseries_by_name():
    path = shared_file("m1_center_out.nwb")
    vel = sip.read_nwb_behavior(path, "hand_velocity")
    pos = sip.read_nwb_behavior(path, "hand_position")  # inside Position
    assert vel.values.shape == (15536, 2) and pos.values.shape == (15536, 2)
    assert vel.unit.startswith("m/s")
    assert vel.timestamps[0] == pytest.approx(12.616)


def test_unknown_name_lists_what_is_there():
    with pytest.raises(ValueError, match="hand_velocity"):
        sip.read_nwb_behavior(shared_file("m1_center_out.nwb"), "wheel_speed")


def test_trials_become_separate_intervals():
    beh = sip.read_nwb_behavior(shared_file("jenkins_mc_maze_2trials.nwb"), "hand_velocity")
    intervals = beh.contiguous_intervals()
    assert len(intervals) == 2
    assert intervals[0, 1] < intervals[1, 0]


def test_slicing_restrict_split_and_nan_count():
    b = sip.Behavior(np.arange(10.0), np.arange(20.0).reshape(10, 2))
    assert len(b.time_slice(2, 5)) == 3
    assert len(b.restrict([(0, 2), (8, 20)])) == 4
    first, second = b.split(0.5)
    assert len(first) + len(second) == 10 and first.end_time < second.start_time
    b.values[3, 1] = np.nan
    assert b.num_missing == 1 and not b.valid[3]


def test_wrong_shapes_are_explained():
    with pytest.raises(ValueError, match="shape"):
        sip.Behavior(np.arange(5.0), np.zeros((2, 5)))
    with pytest.raises(ValueError, match="NaN"):
        sip.Behavior(np.array([0.0, np.nan]), np.zeros(2))
