"""``spikeinterface-poyo rates``: infer firing rates with a saved MtM model and write them into NWB."""

from __future__ import annotations

from pathlib import Path

from .common import add_decoding_options, progress

HELP = "infer rates with an MtM model and write them into the file"
DESCRIPTION = """Infer the firing rate of every unit in every bin with a saved MtM model and write them
into the NWB file, as an InferredRates (ndx-poyo extension) in processing/ecephys with the
model's name, version, sha256, training sessions and preset, and the units table rows of its
columns. Each unit's rate is predicted while that unit is masked, from the other units. The
file is replaced atomically only after the written copy checks out; --output writes a new file
instead; --storage companion writes SESSION.poyo.nwb beside it, linking its units.

examples:
  spikeinterface-poyo rates session.nwb --model mtm_model/
  spikeinterface-poyo rates day2.nwb --model mtm_model/ --session-id day2 --output day2_rates.nwb"""


def add_arguments(parser) -> None:
    parser.add_argument("session", type=Path, metavar="SESSION.nwb", help="NWB file with a units table")
    parser.add_argument("--model", required=True, metavar="MODEL", help="saved MtM model folder")
    parser.add_argument("--output", type=Path, metavar="COPY.nwb", help="write a new file instead of into SESSION.nwb")
    parser.add_argument("--name", default="inferred_rates", help="name of the series (default: inferred_rates)")
    parser.add_argument("--overwrite", action="store_true", help="replace inferred rates of the same name")
    parser.add_argument("--storage", choices=("auto", "copy", "companion"), default="auto", help="as for decode")
    parser.add_argument("--companion", type=Path, metavar="FILE.nwb", help="companion file to write (any storage)")
    add_decoding_options(parser)


def run(args) -> None:
    from ..io.nwb_read import read_nwb_units
    from ..io.nwb_write import write_rates_to_nwb
    from ..models.mtm import infer_rates
    from ..models.registry import load_model

    model = load_model(args.model, device=args.device)
    if model.family != "mtm":
        raise ValueError(
            f"{args.model} holds a {model.family!r} model; rates need an MtM model (decode with 'decode')."
        )
    sorting = read_nwb_units(args.session)
    rates = infer_rates(sorting, model, args.session_id, batch_size=args.batch_size, progress_bar=progress())
    written = write_rates_to_nwb(
        args.session,
        rates,
        model=model,
        name=args.name,
        overwrite=args.overwrite,
        model_path=Path(args.model) if Path(args.model).is_dir() else None,
        bin_size=model.bin_size,
        masking="neuron" if "neuron" in model.schemes else "temporal",
        output_path=args.output,
        storage=args.storage,
        companion_path=args.companion,
    )
    print(f"{rates.values.shape[1]} units x {len(rates)} bins of {model.bin_size * 1e3:g} ms written to {written}")
