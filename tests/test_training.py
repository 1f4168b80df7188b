import numpy as np
import pytest
import spikeinterface.extractors as se
import torch
from conftest import shared_file

import spikeinterface_poyo as sip

FAST = dict(preset="tiny", max_epochs=1, max_time_s=None, progress_bar=False)


def test_simulated_tuning_is_recovered(simulated):
    sorting, behavior = simulated
    train, test = behavior.split(0.7)
    model = sip.train_decoder(sorting, train, preset="tiny", max_epochs=40, max_time_s=None, progress_bar=False)
    decoded = sip.decode_behavior(sorting, model, timestamps=test.timestamps, progress_bar=False)
    assert decoded.values.shape == test.values.shape
    assert sip.r2_score(test, decoded)["mean"] > 0.5
    assert model.meta["training"]["best_val_r2"] > 0.3


def test_same_seed_same_model(simulated):
    sorting, behavior = simulated
    a = sip.train_decoder(sorting, behavior, seed=3, **FAST)
    b = sip.train_decoder(sorting, behavior, seed=3, **FAST)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, msg=name)


def test_decoding_defaults_to_the_whole_span_at_the_behaviour_rate(simulated, tiny_model):
    sorting, behavior = simulated
    decoded = sip.decode_behavior(sorting, tiny_model, progress_bar=False)
    assert decoded.name == "decoded_velocity"
    assert len(decoded) == pytest.approx(len(behavior), rel=0.02)
    assert np.isfinite(decoded.values).all()


def test_parallel_decoding_matches_serial_and_restores_threads(simulated, tiny_model):
    sorting, behavior = simulated
    t = behavior.timestamps[::3]
    threads = torch.get_num_threads()
    serial = sip.decode_behavior(sorting, tiny_model, timestamps=t, batch_size=64, n_jobs=1, progress_bar=False)
    parallel = sip.decode_behavior(sorting, tiny_model, timestamps=t, batch_size=3, n_jobs=2, progress_bar=False)
    np.testing.assert_allclose(parallel.values, serial.values, atol=1e-5)
    assert torch.get_num_threads() == threads


def test_nan_samples_are_left_out(simulated):
    sorting, behavior = simulated
    holed = sip.Behavior(behavior.timestamps, behavior.values.copy(), name="velocity")
    holed.values[::3] = np.nan
    model = sip.train_decoder(sorting, holed, **FAST)
    assert np.isfinite(model.meta["normalization"]["session"]["mean"]).all()
    assert model.meta["training"]["nan_samples_excluded"] == len(behavior.timestamps[::3])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda b: sip.Behavior(b.timestamps + 10_000, b.values), "does not overlap"),
        (lambda b: sip.Behavior(b.timestamps, np.full_like(b.values, np.nan)), "no usable samples"),
        (lambda b: b.time_slice(0, 0.5), "shorter than one"),
    ],
)
def test_bad_behaviour_is_explained(simulated, make, message):
    sorting, behavior = simulated
    with pytest.raises(ValueError, match=message):
        sip.train_decoder(sorting, make(behavior), **FAST)


def test_unknown_units_are_explained(simulated, tiny_model):
    other, _ = sip.simulate_session(duration=20.0, num_units=3, seed=5)
    renamed = other.rename_units(["x", "y", "z"])
    with pytest.raises(sip.UnknownSessionError, match="not one the model was trained on"):
        sip.decode_behavior(renamed, tiny_model, progress_bar=False)
    with pytest.raises(sip.UnknownSessionError, match="3 of the sorting's 3 units are not units of session"):
        sip.decode_behavior(renamed, tiny_model, session_id="session", progress_bar=False)
    with pytest.raises(sip.UnknownSessionError, match="'elsewhere' is not a session this model knows"):
        sip.decode_behavior(renamed, tiny_model, session_id="elsewhere", progress_bar=False)


def test_another_recording_with_the_same_unit_ids_is_refused(simulated, tiny_model):
    """Every sorter numbers its units 0, 1, 2...: matching ids must not be enough to decode."""
    other, _ = sip.simulate_session(duration=120.0, num_units=40, seed=9)  # same ids 0..39, other spikes
    with pytest.raises(sip.UnknownSessionError, match="not one the model was trained on"):
        sip.decode_behavior(other, tiny_model, progress_bar=False)
    sorting, behavior = simulated
    decoded = sip.decode_behavior(sorting, tiny_model, timestamps=behavior.timestamps[:50], progress_bar=False)
    sliced = sip.decode_behavior(
        sorting.frame_slice(0, None), tiny_model, timestamps=behavior.timestamps[:50], session_id="session"
    )
    np.testing.assert_allclose(sliced.values, decoded.values, atol=1e-5)


def test_timestamps_outside_the_spikes_or_in_milliseconds_are_refused(simulated, tiny_model):
    sorting, behavior = simulated
    with pytest.raises(ValueError, match="look like milliseconds"):
        sip.decode_behavior(sorting, tiny_model, timestamps=behavior.timestamps * 1000, progress_bar=False)
    with pytest.raises(ValueError, match="outside the spikes' span"):
        sip.decode_behavior(sorting, tiny_model, timestamps=behavior.timestamps + 500.0, progress_bar=False)


def test_real_m1_velocity_tiny_preset_quickly():
    """A weak, quick bound on real data; benchmarks/m1_velocity.py measures the real claim."""
    path = shared_file("m1_center_out.nwb")
    sorting = se.read_nwb_sorting(str(path))
    behavior = sip.read_nwb_behavior(path, "hand_velocity")
    train, test = behavior.split(0.7)
    model = sip.train_decoder(sorting, train, preset="tiny", max_epochs=6, max_time_s=None, progress_bar=False)
    decoded = sip.decode_behavior(sorting, model, timestamps=test.timestamps, progress_bar=False)
    assert sip.r2_score(test, decoded)["mean"] > 0.2


class _FakeClock:
    """A stand-in for the ``time`` module whose clock moves only when told, so budget tests do not
    depend on how fast the machine runs."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


class _SlowTask:
    """A one-parameter regression whose every step takes ``seconds`` of ``clock``'s time; records the
    learning rate."""

    score_name = "score"

    def __init__(self, steps_per_epoch: int, seconds: float, clock: _FakeClock):
        self.model = torch.nn.Linear(1, 1)
        self.steps_per_epoch, self.seconds, self.clock, self.lrs = steps_per_epoch, seconds, clock, []
        self.trainer = None

    def start_epoch(self, rng):
        pass

    def loss(self, net, rng, step_in_epoch):
        self.clock.now += self.seconds
        self.lrs.append(self.trainer.optimizer.param_groups[0]["lr"])
        x = torch.ones(4, 1)
        return ((net(x) - 1.0) ** 2).mean()

    def validate(self):
        return 0.0, 1

    def identity(self):
        return {}

    def sampler_state(self):
        return {}

    def load_sampler_state(self, state):
        pass


def test_a_short_budget_refits_the_schedule_within_the_first_epoch(monkeypatch):
    """With 100 epochs of 50 steps planned but a budget of about 4 epochs, the warm-up must not span
    the planned 500 steps: the schedule is re-fitted 20 steps in, so the first epoch reaches the peak
    learning rate and the run anneals to (near) zero by its end."""
    from spikeinterface_poyo.training import trainer as trainer_module
    from spikeinterface_poyo.training.config import TrainingConfig
    from spikeinterface_poyo.training.trainer import EARLY_REFIT_STEPS, Trainer

    clock = _FakeClock()
    monkeypatch.setattr(trainer_module, "time", clock)
    task = _SlowTask(steps_per_epoch=50, seconds=0.01, clock=clock)
    config = TrainingConfig(max_epochs=100, max_time_s=2.0, lr=1e-2, progress_bar=False, patience=1000)
    trainer = Trainer(task, config)
    task.trainer = trainer
    record = trainer.run()
    lrs = np.array(task.lrs)
    assert lrs[EARLY_REFIT_STEPS - 1] < 0.1 * 1e-2  # still on the planned 500-step warm-up
    assert lrs[:50].max() > 0.9 * 1e-2  # re-fitted: the peak comes within the first epoch
    assert 2 <= record["epochs"] <= 6 and record["stopped_by"] in ("schedule_end", "max_time_s")
    assert lrs[-1] < 0.2 * 1e-2  # annealed by the end
