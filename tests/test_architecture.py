"""The layout's promises: layers import only downwards (functions included), no import cycles,
a cheap and side-effect-free ``import spikeinterface_poyo``, and the SpikeInterface hooks."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "spikeinterface_poyo"
#: Each stage may import its own layer and the layers below it.
LAYERS = {
    "core": 0, "io": 1, "simulation": 1, "training": 2, "models": 3, "sorting": 3, "analysis": 4, "spikeinterface": 4,
    "cli": 5,
}  # fmt: skip


def _module_name(path: Path) -> str:
    parts = ["spikeinterface_poyo", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every package module ``path`` imports, at module level or inside functions."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.startswith("spikeinterface_poyo"):
                found.add(module)
                found.update(f"{module}.{alias.name}" for alias in node.names)  # submodules imported by name
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("spikeinterface_poyo"))
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_lower_layers_never_import_higher_ones():
    wrong = [
        f"{module} -> {target}"
        for module, targets in _graph().items()
        for target in targets
        if _layer(module) is not None and _layer(target) is not None and _layer(target) > _layer(module)
    ]
    assert not wrong, wrong


def test_no_import_cycles_not_even_inside_functions():
    graph = _graph()
    # a package's __init__ is imported before its submodules; an edge to a parent package is that
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for target in graph[node]:
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_import_is_cheap_and_runs_no_model_code():
    out = _run(
        "import sys; import spikeinterface_poyo as sip; "
        "heavy = ('torch', 'spikeinterface', 'spikeinterface.full', 'pynwb', 'h5py'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    assert out.strip() == "[]"


def test_cli_help_loads_no_model_code():
    out = _run(
        "import sys; from spikeinterface_poyo.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'spikeinterface', 'pynwb') if m in sys.modules))"
    )
    assert out.strip() == "[]"
    result = subprocess.run([sys.executable, "-m", "spikeinterface_poyo", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "finetune" in result.stdout


@pytest.mark.parametrize("order", ["spikeinterface first", "package first"])
def test_si_decode_behavior_and_the_extension_are_found_in_either_import_order(order):
    first, second = "import spikeinterface.full as si", "import spikeinterface_poyo as sip"
    if order == "package first":
        first, second = second, first
    out = _run(
        f"{first}; {second}; import spikeinterface as base; "
        "from spikeinterface.core.sortinganalyzer import get_extension_class; "
        "print(si.decode_behavior.__module__, base.decode_behavior is si.decode_behavior, "
        "get_extension_class('poyo_decoding').__name__)"
    )
    assert out.split() == ["spikeinterface_poyo.spikeinterface.hooks", "True", "ComputePoyoDecoding"]


def test_public_names_resolve_and_unknown_ones_are_an_attribute_error():
    import spikeinterface_poyo as sip

    for name in sip.__all__:
        assert getattr(sip, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sip.nope  # noqa: B018


def test_a_saved_analyzer_finds_its_extension_once_the_package_is_imported(tmp_path):
    import spikeinterface.full as si

    import spikeinterface_poyo as sip

    sorting, behavior = sip.simulate_session(duration=20.0, num_units=5, seed=1)
    sip.save_model(sip.WienerFilter().fit(sorting, behavior), tmp_path / "model")
    recording = si.generate_recording(num_channels=4, durations=[20.0], sampling_frequency=30000.0, seed=0)
    analyzer = si.create_sorting_analyzer(sorting, recording, format="binary_folder", folder=tmp_path / "an")
    analyzer.compute("poyo_decoding", model=tmp_path / "model", timestamps=behavior.timestamps)
    out = _run(
        "import warnings; import spikeinterface.full as si; "
        f"a = si.load_sorting_analyzer({str(tmp_path / 'an')!r}); "
        "print('poyo_decoding' in a.get_loaded_extension_names()); "
        "import spikeinterface_poyo; print(len(a.get_extension('poyo_decoding').get_data()))"
    )
    # SpikeInterface skips the unknown extension on load; importing the package afterwards finds it on disk
    assert out.split() == ["False", str(len(behavior))]
