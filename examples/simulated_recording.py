"""Decode behaviour from a simulated recording three ways: true spikes, threshold crossings
and a spike sorter.

A ground-truth recording is simulated with SpikeInterface's generators (units cosine-tuned to
a 2-D velocity, their waveforms injected over noise on a Utah-array-like grid). Then

(a) the true sorting,
(b) the threshold crossings of the recording (``sip.threshold_crossings``), and
(c) the output of SpikeInterface's ``"simple"`` sorter (needs numba and scikit-learn)

each get a POYO decoder trained on the first 75 % of the session, and R² is reported on the
last 25 %. The threshold-crossing decoder also goes through a SortingAnalyzer: the decoded
behaviour is computed as the ``poyo_decoding`` extension, saved in zarr and read back.

Run::

    python examples/simulated_recording.py                  # 120 s, 32 channels
    python examples/simulated_recording.py --duration 60 --no-sorter
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
import warnings
from pathlib import Path

import spikeinterface.core as si

import spikeinterface_poyo as sip
from spikeinterface_poyo.simulation import simulate_recording

TRAIN_FRACTION = 0.75


def train_and_score(
    sorting, behavior, preset="tiny", max_epochs=40, max_time_s=120.0, seed=0, lr=5e-3, batch_size=16, **train_kwargs
):
    """Train on the first part of the session, decode the rest: (test R², model)."""
    train, test = behavior.split(TRAIN_FRACTION)
    # the epoch count, not the time limit, should end training: the result then does not depend on the machine
    model = sip.train_decoder(
        sorting,
        train,
        preset=preset,
        max_epochs=max_epochs,
        max_time_s=max_time_s,
        seed=seed,
        lr=lr,
        batch_size=batch_size,
        progress_bar=False,
        **train_kwargs,
    )
    decoded = sip.decode_behavior(sorting, model, timestamps=test.timestamps, progress_bar=False)
    return sip.r2_score(test, decoded)["mean"], model


def sorter_unavailable_reason(sorter: str) -> str | None:
    """Why the sorter cannot run here, or None when it can."""
    import spikeinterface.sorters as ss

    # "simple" detects with "locally_exclusive" (numba), projects with TruncatedSVD (scikit-learn)
    # and clusters with isosplit (numba); the other internal sorters also need hdbscan
    missing = [name for name in ("numba", "sklearn") if importlib.util.find_spec(name) is None]
    if missing:
        return f"the {sorter!r} sorter needs {', '.join(missing)} (pip install numba scikit-learn)"
    if sorter not in ss.installed_sorters():
        return f"the {sorter!r} sorter is not installed here (installed: {ss.installed_sorters()})"
    return None


def run_sorter(recording, folder: Path, sorter: str = "simple"):
    import spikeinterface.sorters as ss

    params = dict(clusterer="isosplit", seed=0) if sorter == "simple" else {}
    with warnings.catch_warnings():  # the sorter saves an in-memory sorting: "provenance will not be saved"
        warnings.simplefilter("ignore", UserWarning)
        return ss.run_sorter(sorter, recording, folder=folder, remove_existing_folder=True, verbose=False, **params)


def decode_through_analyzer(sorting, recording, model, behavior, folder: Path) -> float:
    """Compute ``poyo_decoding`` on an analyzer, save it as zarr, read it back and score it."""
    model_path = sip.save_model(model, folder / "tc_decoder")
    _, test = behavior.split(TRAIN_FRACTION)
    analyzer = si.create_sorting_analyzer(sorting, recording, format="zarr", folder=folder / "tc.zarr", sparse=False)
    analyzer.compute("poyo_decoding", model=model_path, timestamps=test.timestamps)
    decoded = si.load_sorting_analyzer(folder / "tc.zarr").get_extension("poyo_decoding").get_data()
    return sip.r2_score(test, decoded)["mean"]


def run(
    duration=120.0,
    num_channels=32,
    sorter: str | None = "simple",
    preset="tiny",
    max_epochs=40,
    max_time_s=120.0,
    seed=0,
    folder=None,
    verbose=True,
    **train_kwargs,
) -> dict:
    """Simulate, detect, sort, train and decode; returns the test R² of each sorting.

    ``train_kwargs`` (``lr=``, ``batch_size=``, ``weight_decay=``...) go to
    :func:`spikeinterface_poyo.train_decoder`; by default ``lr=5e-3`` and ``batch_size=16``, which
    converge in 40 epochs on these short sessions.

    Returns
    -------
    dict
        ``true``, ``threshold_crossings``, ``analyzer`` (threshold crossings decoded through the
        ``poyo_decoding`` extension) and, when the sorter ran, ``sorter``: each a test R²;
        ``num_units`` of each sorting; ``sorter_skipped`` with the reason when it did not run.
    """
    say = print if verbose else (lambda *args, **kwargs: None)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(folder or tmp)
        t0 = time.perf_counter()
        recording, true_sorting, behavior = simulate_recording(
            duration=duration, num_channels=num_channels, seed=seed, sorting_folder=work / "true_sorting"
        )
        say(f"simulated {recording}")
        crossings = sip.threshold_crossings(recording, progress_bar=False)
        say(f"threshold crossings: {crossings.to_spike_vector().size} on {crossings.get_num_units()} channels")
        sortings = {"true": true_sorting, "threshold_crossings": crossings}
        results = {"num_units": {}}
        if sorter is not None:
            reason = sorter_unavailable_reason(sorter)
            if reason is None:
                sortings["sorter"] = run_sorter(recording, work / f"{sorter}_output", sorter)
                say(f"{sorter} sorter: {sortings['sorter'].get_num_units()} units")
            else:
                results["sorter_skipped"] = reason
                say(f"sorter skipped: {reason}")

        models = {}
        for name, sorting in sortings.items():
            results[name], models[name] = train_and_score(
                sorting, behavior, preset, max_epochs, max_time_s, seed, **train_kwargs
            )
            results["num_units"][name] = sorting.get_num_units()
        results["analyzer"] = decode_through_analyzer(
            crossings, recording, models["threshold_crossings"], behavior, work
        )
        results["seconds"] = round(time.perf_counter() - t0, 1)

    say(f"\ntest R² on the last {1 - TRAIN_FRACTION:.0%} of a {duration:g} s session ({num_channels} channels):")
    for name in ("true", "threshold_crossings", "sorter", "analyzer"):
        if name in results:
            units = results["num_units"].get(name, results["num_units"]["threshold_crossings"])
            say(f"  {name:<22} R² = {results[name]:.3f}   ({units} units)")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds to simulate")
    parser.add_argument("--channels", type=int, default=32, help="number of electrodes")
    parser.add_argument("--sorter", default="simple", help="SpikeInterface sorter for (c)")
    parser.add_argument("--no-sorter", action="store_true", help="skip (c)")
    parser.add_argument("--preset", default="tiny", help="POYO architecture")
    parser.add_argument("--epochs", type=int, default=40, help="training epochs per decoder")
    parser.add_argument("--max-time", type=float, default=120.0, help="training time limit per decoder, seconds")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    run(
        duration=args.duration,
        num_channels=args.channels,
        sorter=None if args.no_sorter else args.sorter,
        preset=args.preset,
        max_epochs=args.epochs,
        max_time_s=args.max_time,
        seed=args.seed,
    )


if __name__ == "__main__":
    main()
