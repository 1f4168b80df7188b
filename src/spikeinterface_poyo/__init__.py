"""POYO and other neural population models for SpikeInterface sortings and NWB files.

>>> import spikeinterface_poyo as sip
>>> model = sip.train_decoder(sorting, sip.read_nwb_behavior("session.nwb", "hand_velocity"))
>>> decoded = sip.decode_behavior(sorting, model)

Importing the package is cheap: the public names below load on first use, and nothing of
SpikeInterface, pynwb or torch is imported until then. Import hooks make
``spikeinterface.full.decode_behavior`` this package's function and let SpikeInterface find the
``poyo_decoding`` analyzer extension when an analyzer computes or loads it.

The package is laid out as the pipeline (see ``docs/architecture.md``): ``core`` (behaviour,
spikes, binning, windows, sessions, metrics), ``io`` (atomic writes, model folders, NWB),
``training`` (the loop), ``models`` (the protocol and the families: ``poyo``, ``baselines``, ``mtm``, ``eit``),
``spikeinterface`` (analyzer extension, threshold crossings, widgets), ``analysis`` (MoLDS trial
clustering, bottleneck curves), ``simulation``, ``cli``.
"""

from __future__ import annotations

import importlib

from ._version import __version__  # noqa: F401  (sip.__version__)
from .spikeinterface import hooks as _hooks

#: Public name -> module that defines it (relative to this package).
_PUBLIC = {
    "Behavior": ".core.behavior",
    "SpikeTokens": ".core.spikes",
    "sorting_to_tokens": ".core.spikes",
    "sorting_fingerprint": ".core.spikes",
    "binned_counts": ".core.binning",
    "r2_score": ".core.metrics",
    "bits_per_spike": ".core.metrics",
    "SessionSource": ".core.sessions",
    "UnknownSessionError": ".core.sessions",
    "read_nwb_behavior": ".io.nwb_read",
    "list_nwb_behaviors": ".io.nwb_read",
    "read_nwb_epochs": ".io.nwb_read",
    "read_nwb_trials": ".io.nwb_read",
    "read_nwb_units": ".io.nwb_read",
    "load_nwb_session": ".io.nwb_read",
    "nwb_session": ".io.nwb_read",
    "read_predictions_from_nwb": ".io.nwb_read",
    "default_companion_path": ".io.nwb_read",
    "write_predictions_to_nwb": ".io.nwb_write",
    "write_rates_to_nwb": ".io.nwb_write",
    "read_rates_from_nwb": ".io.nwb_read",
    "TrainingConfig": ".training.config",
    "BehaviorDecoder": ".models.base",
    "NotFittedError": ".models.base",
    "decode_behavior": ".models.decoding",
    "save_model": ".models.registry",
    "load_model": ".models.registry",
    "available_models": ".models.registry",
    "POYO": ".models.poyo",
    "PRESETS": ".models.poyo",
    "POYODecoder": ".models.poyo",
    "train_decoder": ".models.poyo",
    "pretrain": ".models.poyo",
    "finetune": ".models.poyo",
    "load_torch_brain_checkpoint": ".models.poyo",
    "StreamingDecoder": ".models.poyo",
    "StreamPredictions": ".models.poyo",
    "FalconDecoder": ".models.poyo",
    "InsufficientContextWarning": ".models.poyo",
    "encoding_bits_per_spike": ".models.poyo",
    "MtM": ".models.mtm",
    "MTM_PRESETS": ".models.mtm",
    "bin_session": ".models.mtm",
    "pretrain_mtm": ".models.mtm",
    "finetune_mtm": ".models.mtm",
    "evaluate_mtm": ".models.mtm",
    "infer_rates": ".models.mtm",
    "decode_from_rates": ".models.mtm",
    "WienerFilter": ".models.baselines",
    "MLPDecoder": ".models.baselines",
    "GRUDecoder": ".models.baselines",
    "EITDecoder": ".models.eit",
    "EITClassifier": ".models.eit",
    "neuron_alignment": ".models.eit",
    "ComputePoyoDecoding": ".spikeinterface.extension",
    "compute_poyo_decoding": ".spikeinterface.extension",
    "ComputeMtmRates": ".spikeinterface.rates_extension",
    "compute_mtm_rates": ".spikeinterface.rates_extension",
    "threshold_crossings": ".spikeinterface.threshold",
    "push_recording_chunk": ".spikeinterface.streaming",
    "plot_decoded_behavior": ".spikeinterface.widgets",
    "plot_trial_clusters": ".spikeinterface.widgets",
    "plot_bottleneck_curve": ".spikeinterface.widgets",
    "MoLDS": ".analysis.molds",
    "cluster_trials": ".analysis.molds",
    "trials_from_events": ".analysis.molds",
    "movement_onsets": ".analysis.molds",
    "event_inputs": ".analysis.molds",
    "label_information": ".analysis.molds",
    "bottleneck_curve": ".analysis.bottleneck",
    "BottleneckCurve": ".analysis.bottleneck",
    "BottleneckDecoder": ".analysis.bottleneck",
    "BinnedPOYO": ".analysis.bottleneck",
    "simulate_session": ".simulation",
    "simulate_corpus": ".simulation",
    "simulate_recording": ".simulation",
    "simulate_regions": ".simulation",
    "SimSortSorter": ".sorting.simsort",
    "simulate_tetrode": ".sorting.simsort",
    "train_simsort_models": ".sorting.simsort",
    "save_simsort": ".sorting.simsort",
    "load_simsort": ".sorting.simsort",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
        globals()[name] = value  # once loaded, an ordinary attribute
        return value
    raise AttributeError(f"module 'spikeinterface_poyo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


_hooks.install()
