"""Hooks into SpikeInterface, installed on ``import spikeinterface_poyo`` without importing
SpikeInterface (or any model code) then:

- ``spikeinterface.decode_behavior`` and ``spikeinterface.full.decode_behavior`` become
  :func:`spikeinterface_poyo.decode_behavior` (never replacing a name SpikeInterface defines);
- ``"poyo_decoding"`` and ``"mtm_rates"`` join SpikeInterface's table of known analyzer
  extensions, so that ``analyzer.compute("poyo_decoding", ...)`` and ``load_sorting_analyzer`` import the extension
  module on demand;
- the ``"simsort"`` sorter joins SpikeInterface's sorter list and dict (it has no plugin entry
  point), so ``run_sorter``, ``get_default_sorter_params`` and ``read_sorter_folder`` find it.

Each hook runs now if its module is already imported, else right after the module's own code
runs, through a finder on ``sys.meta_path`` that wraps that one module's loader.
"""

from __future__ import annotations

import importlib.machinery
import sys

EXTENSION_MODULE = "spikeinterface_poyo.spikeinterface.extension"
RATES_EXTENSION_MODULE = "spikeinterface_poyo.spikeinterface.rates_extension"
SORTER_MODULE = "spikeinterface_poyo.sorting.simsort.sorter"


def decode_behavior(*args, **kwargs):
    """:func:`spikeinterface_poyo.decode_behavior` (loaded on first call)."""
    from ..models.decoding import decode_behavior as decode

    return decode(*args, **kwargs)


def _add_decode_behavior(module) -> None:
    current = getattr(module, "decode_behavior", None)
    if current is None or getattr(current, "__module__", "").startswith("spikeinterface_poyo"):
        module.decode_behavior = decode_behavior


def _add_extension(module) -> None:
    module._builtin_extensions.setdefault("poyo_decoding", EXTENSION_MODULE)
    module._builtin_extensions.setdefault("mtm_rates", RATES_EXTENSION_MODULE)


def _add_sorter(module) -> None:
    sorter = sys.modules.get(SORTER_MODULE)
    if sorter is not None and not hasattr(sorter, "register"):
        return  # that module is what imports SpikeInterface's sorters now; it registers itself when defined
    from ..sorting.simsort.sorter import register

    register(module)


HOOKS = {
    "spikeinterface": _add_decode_behavior,
    "spikeinterface.full": _add_decode_behavior,
    "spikeinterface.core.sortinganalyzer": _add_extension,
    "spikeinterface.sorters.sorterlist": _add_sorter,
}


class _Loader:
    """Runs the real loader, then the hook (a plain class: importlib.abc costs 0.1 s to import)."""

    def __init__(self, loader, hook):
        self.loader, self.hook = loader, hook

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        self.hook(module)


class _AfterImport:
    """Finds the hooked modules with the other finders and wraps their loaders."""

    def find_spec(self, name, path, target=None):
        hook = HOOKS.get(name)
        if hook is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _Loader(spec.loader, hook)
        return spec


def install() -> None:
    """Run the hooks of modules already imported and wait for the others (idempotent)."""
    for name, hook in HOOKS.items():
        if name in sys.modules:
            hook(sys.modules[name])
    if not any(isinstance(finder, _AfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())
