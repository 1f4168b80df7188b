"""Baseline decoders on binned spike counts, each a model family of its own: trained, saved,
decoded, run by the analyzer extension and the command line like POYO.

- :class:`WienerFilter` (family ``"wiener"``): the classic causal linear decoder of BCI work,
  ridge regression from the counts of the current and previous bins.
- :class:`MLPDecoder` (``"mlp"``): a two-hidden-layer perceptron on the same kind of history.
- :class:`GRUDecoder` (``"gru"``): a gated recurrent network run over the history bins in time order.

By default the features are causal: the decoder at time ``t`` only sees spikes up to ``t``.
``leads=`` adds bins after ``t`` (look-ahead, for comparisons with a centred decoder offline),
and the GRU can run both ways over them (``bidirectional=True``)::

    decoder = MLPDecoder(seed=0).fit(sorting, train_behavior)
    decoded = decoder.predict(sorting, test_behavior.timestamps)  # a Behavior
    sip.r2_score(test_behavior, decoded)
"""

from ...core.binning import binned_history
from .gru import GRUDecoder
from .mlp import MLPDecoder
from .wiener import WienerFilter

__all__ = ["GRUDecoder", "MLPDecoder", "WienerFilter", "binned_history"]
