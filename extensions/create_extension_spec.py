"""Write the ``ndx-poyo`` NWB extension spec (namespace and extensions YAML).

Run from anywhere::

    python extensions/create_extension_spec.py

It writes ``ndx-poyo.namespace.yaml`` and ``ndx-poyo.extensions.yaml`` into this folder
(the source of truth) and copies them into ``src/spikeinterface_poyo/nwb_spec/``, the
copy the installed package loads. ``--output-dir DIR`` writes only into ``DIR``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from pynwb.spec import NWBAttributeSpec, NWBDatasetSpec, NWBGroupSpec, NWBNamespaceBuilder, export_spec

NAMESPACE = "ndx-poyo"
VERSION = "0.2.0"
HERE = Path(__file__).resolve().parent
PACKAGE_SPEC_DIR = HERE.parent / "src" / "spikeinterface_poyo" / "io" / "nwb_spec"
SPEC_FILES = (f"{NAMESPACE}.namespace.yaml", f"{NAMESPACE}.extensions.yaml")


def _text(name: str, doc: str, required: bool = True, array: bool = False) -> NWBAttributeSpec:
    extra = {"shape": [None], "dims": [f"num_{name}"]} if array else {}
    return NWBAttributeSpec(name=name, doc=doc, dtype="text", required=required, **extra)


def _provenance(model_doc: str) -> list[NWBAttributeSpec]:
    """The attributes naming the model behind a series, shared by every type here."""
    return [
        _text("model_name", model_doc),
        _text("model_version", "Version of the software that trained the model (spikeinterface-poyo)."),
        _text(
            "model_sha256",
            "Hex sha256 of the saved model's weights file (model.safetensors); identifies the exact model.",
            required=False,
        ),
        _text("preset", "Architecture preset of the model, for example 'small'.", required=False),
        _text("training_sessions", "Identifiers of the sessions the model was trained on.", False, True),
    ]


def _metrics(example: str) -> NWBAttributeSpec:
    return _text(
        "metrics",
        f"Evaluation metrics as a JSON object, for example {example}, with how they were measured.",
        required=False,
    )


def decoded_behavior_spec() -> NWBGroupSpec:
    """The ``DecodedBehavior`` type: a TimeSeries plus the provenance of the model that produced it."""
    return NWBGroupSpec(
        neurodata_type_def="DecodedBehavior",
        neurodata_type_inc="TimeSeries",
        doc=(
            "Behaviour decoded from spiking activity by a trained neural decoder (for example POYO), "
            "with the provenance needed to reproduce it: model name, version and checksum, the sessions "
            "it was trained on, its architecture preset, evaluation metrics when known, and the units "
            "whose spikes were its input."
        ),
        attributes=[
            *_provenance("Name of the decoding model, for example 'POYO'."),
            _text("decoded_variable", "Name of the behavioural variable the model predicts.", required=False),
            _text("dimension_names", "Name of each column of data, for example ['x', 'y'].", False, True),
            _metrics('{"r2": [0.8, 0.7], "mean": 0.75}'),
        ],
        datasets=[
            NWBDatasetSpec(
                name="units",
                neurodata_type_inc="DynamicTableRegion",
                doc="Rows of the units table whose spikes were the decoder's input.",
                quantity="?",
            )
        ],
    )


def inferred_rates_spec() -> NWBGroupSpec:
    """The ``InferredRates`` type: a TimeSeries of firing rates, one column per unit, plus the provenance."""
    return NWBGroupSpec(
        neurodata_type_def="InferredRates",
        neurodata_type_inc="TimeSeries",
        doc=(
            "Firing rates of units inferred by a trained model of population activity (for example MtM "
            "masked modelling), one column per unit, with provenance."
        ),
        attributes=[
            *_provenance("Name of the model that inferred the rates, for example 'MtM'."),
            _metrics('{"bits_per_spike": 0.3}'),
            NWBAttributeSpec(
                name="bin_size",
                doc="Width in seconds of the time bins the rates are averages over; data are at the bin centres.",
                dtype="float64",
                required=False,
            ),
            _text(
                "masking",
                "How the model was prompted to infer the rates: its masking scheme, for example 'neuron' "
                "(each unit inferred from the others) or 'causal'.",
                required=False,
            ),
        ],
        datasets=[
            NWBDatasetSpec(
                name="units",
                neurodata_type_inc="DynamicTableRegion",
                doc="Row of the units table of each column of data, in column order.",
                quantity="?",
            )
        ],
    )


def write_spec(output_dir: Path) -> list[Path]:
    """Export the namespace and extensions YAML into ``output_dir``."""
    builder = NWBNamespaceBuilder(
        doc="Decoded behaviour and inferred firing rates with model provenance, written by spikeinterface-poyo.",
        name=NAMESPACE,
        version=VERSION,
        author=["spikeinterface-poyo developers"],
        contact=["spikeinterface-poyo developers"],
    )
    builder.include_type("TimeSeries", namespace="core")
    builder.include_type("DynamicTableRegion", namespace="hdmf-common")
    output_dir.mkdir(parents=True, exist_ok=True)
    export_spec(builder, [decoded_behavior_spec(), inferred_rates_spec()], str(output_dir))
    return [output_dir / name for name in SPEC_FILES]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=None, help="write only here (default: this folder)")
    args = parser.parse_args(argv)
    if args.output_dir is not None:
        write_spec(args.output_dir)
        return
    for path in write_spec(HERE):
        shutil.copyfile(path, PACKAGE_SPEC_DIR / path.name)  # the copy shipped inside the package
        print(f"wrote {path} and {PACKAGE_SPEC_DIR / path.name}")


if __name__ == "__main__":
    main()
