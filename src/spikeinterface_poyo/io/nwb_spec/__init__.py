"""The ``ndx-poyo`` NWB extension: its YAML spec lives beside this file, and importing this
module loads it into pynwb's type map. Files written by the package cache the spec, so a reader
without this package still opens them with plain pynwb."""

from __future__ import annotations

from pathlib import Path

import pynwb

NAMESPACE = "ndx-poyo"
SPEC_DIR = Path(__file__).resolve().parent
NAMESPACE_PATH = SPEC_DIR / f"{NAMESPACE}.namespace.yaml"
#: The processing module decoded behaviour is written into.
MODULE_NAME = "behavior"
#: The processing module inferred firing rates are written into (NWB's usual name for processed ephys).
RATES_MODULE = "ecephys"
#: A companion file's name is its source's stem plus this suffix, beside it: ``session.poyo.nwb``
#: sorts next to ``session.nwb``, names its producer, and still ends in ``.nwb`` for NWB tools.
COMPANION_SUFFIX = ".poyo.nwb"
#: In a companion file, the table (in :data:`MODULE_NAME`) holding the ids of the source's units,
#: row for row, that the ``units`` regions of its DecodedBehavior and InferredRates objects point into.
SOURCE_UNITS_TABLE = "source_units"


def load_namespace() -> None:
    """Load the ``ndx-poyo`` namespace into pynwb's type map (once)."""
    if NAMESPACE not in pynwb.get_type_map().namespace_catalog.namespaces:
        pynwb.load_namespaces(str(NAMESPACE_PATH))


load_namespace()
DecodedBehavior = pynwb.get_class("DecodedBehavior", NAMESPACE)
InferredRates = pynwb.get_class("InferredRates", NAMESPACE)
