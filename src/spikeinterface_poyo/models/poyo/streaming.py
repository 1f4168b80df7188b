"""Closed-loop decoding with a causal POYO model: spikes pushed as they arrive, and one prediction
every ``hop`` seconds from the window of spikes before it.

:class:`StreamingDecoder` keeps the spikes of the last window only. A push that makes one time
due (the closed-loop case) decodes it with :class:`~.causal_step.CausalWindowStep`, which
computes once what every causal window shares; a push that makes several due decodes them in
batches with :meth:`POYO.predict_segment` in causal context. Either way the window, its tokens
and its query time are those of offline causal decoding
(:func:`~spikeinterface_poyo.decode_behavior`), so the two agree to float rounding.
:class:`FalconDecoder` gives it the decoder interface of the FALCON benchmark (``reset``,
``predict`` on one bin of counts, ``on_done``) without importing FALCON.
"""

from __future__ import annotations

import time
import warnings
from typing import NamedTuple

import numpy as np

from ...core.spikes import SpikeTokens, as_sorting, namespaced_unit_ids, segment_spikes
from ...core.windows import TIME_TOLERANCE, check_hop, has_full_context
from .causal_step import CausalWindowStep


class InsufficientContextWarning(UserWarning):
    """The stream has a gap: predictions whose window reaches into it are NaN, not invented."""


class StreamPredictions(NamedTuple):
    """Predictions a push made due: ``times`` (K,) seconds and ``values`` (K, D) in the behaviour's
    units, NaN where the window before the time is not fully covered by data."""

    times: np.ndarray
    values: np.ndarray

    @property
    def ready(self) -> np.ndarray:
        """(K,) True where the prediction had a full window of spikes."""
        return np.all(np.isfinite(self.values), axis=1)


class StreamingDecoder:
    """Decode behaviour from spikes as they arrive, one prediction every ``hop`` seconds.

    A prediction at time ``t`` (``t = start_time + k * hop``, k = 1, 2...) is made as soon as the
    data reach ``t``, from the spikes in ``[t - window, t)`` alone. Until one full window of data
    has passed (after :meth:`reset`, or after a gap), predictions are NaN: the decoder has too
    little context and says so rather than decoding silence.

    Parameters
    ----------
    model : POYO or POYODecoder
        A causal model (trained with ``context="causal"``).
    hop : float, default: 0.02
        Seconds between predictions; a whole number of hops must make the model's window.
    session_id : str or None
        Which of the model's sessions the stream is; by default its only one.
    unit_ids : list or None
        The ids the pushed spikes name their units by (the sorting's unit ids, or the channel ids
        of threshold crossings); by default the session's units. Each must be a unit of the
        session.
    start_time : float or None
        Time (seconds) the stream starts at; by default the ``start_time`` of the first push, or 0.
    batch_size : int, default: 16
        Windows per forward pass when a push makes several predictions due.
    allow_centred : bool, default: False
        Stream a model trained with centred windows anyway (read at the edge of its window, where
        it was not trained).

    Attributes
    ----------
    window : float
        The model's window, in seconds.
    compute_time_s, neural_time_s : float
        Seconds spent decoding, and seconds of data pushed, since :meth:`reset`.

    Examples
    --------
    >>> stream = sip.StreamingDecoder(model, hop=0.02)
    >>> for times, unit_ids, end in chunks:          # spikes of [previous end, end), in time order
    ...     out = stream.push(times, unit_ids, end_time=end)
    ...     send(out.values[out.ready])
    """

    def __init__(
        self,
        model,
        hop: float = 0.02,
        *,
        session_id: str | None = None,
        unit_ids=None,
        start_time: float | None = None,
        batch_size: int = 16,
        allow_centred: bool = False,
    ):
        decoder = model.fitted_decoder()
        if "causal" not in getattr(decoder, "contexts", ()):
            raise TypeError(f"A {type(decoder).__name__} model cannot be streamed; stream a POYO model.")
        if decoder.context != "causal" and not allow_centred:
            raise ValueError(
                f"This model was trained with {decoder.context} windows: it reads a time in the middle of its window, "
                "with spikes after it. Train it for streaming with sip.train_decoder(..., context='causal'), or pass "
                "allow_centred=True to stream it anyway."
            )
        self.model, self.window = decoder, float(decoder.window_length)
        self.hop = check_hop(hop, self.window)
        self.batch_size = int(batch_size)
        sessions = decoder.session_units()
        if session_id is None:
            if len(sessions) != 1:
                raise ValueError(
                    f"The model knows {len(sessions)} sessions; say which with session_id= ({sorted(sessions)})."
                )
            session_id = next(iter(sessions))
        if session_id not in sessions:
            raise ValueError(f"The model has no session {session_id!r}; it knows {sorted(sessions)}.")
        known = sessions[session_id]
        unit_ids = [str(u) for u in (known if unit_ids is None else unit_ids)]
        unknown = sorted(set(unit_ids) - set(known))
        if unknown:
            raise ValueError(
                f"{len(unknown)} unit ids are not units of session {session_id!r} of the model: {unknown[:10]}. "
                "Give unit_ids= only the model's units of that session (finetune the model for new ones)."
            )
        self.session_id, self.unit_ids = session_id, unit_ids
        self._vocab_ids = namespaced_unit_ids(session_id, unit_ids)
        self._position = {u: i for i, u in enumerate(unit_ids)}
        self._replayed = None  # (sorting, its tokens): push_sorting_chunk reads a sorting's spikes once
        self.reset(start_time)

    # ---- state ---------------------------------------------------------------------------------
    def reset(self, start_time: float | None = None) -> None:
        """Forget every spike (a new block or session); the next prediction needs a full window again.

        Also re-reads the model's weights, should they have changed since the stream was made."""
        self._step = CausalWindowStep(self.model, self.session_id, self.unit_ids)
        self.start_time = None if start_time is None else float(start_time)
        self._history_start = self.start_time  # data are contiguous from here (moved by a gap)
        self._covered = self.start_time  # every spike before this time has been pushed
        self._next = 1  # index k of the next due time start_time + k * hop
        self._times = np.zeros(0)
        self._units = np.zeros(0, dtype=np.int64)
        self.compute_time_s = 0.0

    @property
    def neural_time_s(self) -> float:
        return 0.0 if self.start_time is None else self._covered - self.start_time

    @property
    def normalized_latency(self) -> float:
        """FALCON's measure: time spent decoding over the time of data decoded."""
        return self.compute_time_s / self.neural_time_s if self.neural_time_s > 0 else float("nan")

    @property
    def buffered_spikes(self) -> int:
        """Spikes held (those of about the last window): the state stays bounded."""
        return len(self._times)

    # ---- pushing -------------------------------------------------------------------------------
    def push(self, spike_times, unit_ids, *, start_time: float | None = None, end_time: float | None = None):
        """Add the spikes of a stretch of time and return the predictions that became due.

        Parameters
        ----------
        spike_times : array_like
            (S,) spike times in seconds, in time order, none before the end of the previous push.
        unit_ids : array_like
            (S,) the unit of each spike, one of the decoder's ``unit_ids``.
        start_time : float or None
            Where this stretch of data starts. A start after the end of the previous push is a gap
            (data missing, not silence): a :class:`InsufficientContextWarning`, and NaN until a
            full window of data has followed it. None: the stretch follows on the previous one.
        end_time : float or None
            Every spike before this time has now been pushed (the chunk's end); predictions up to
            it are made. None: the last spike's time.

        Returns
        -------
        StreamPredictions
            The due times and their predictions (possibly none).
        """
        tic = time.perf_counter()
        times = np.asarray(spike_times, dtype=np.float64).reshape(-1)
        ids = np.asarray(unit_ids).reshape(-1)
        if len(ids) != len(times):
            raise ValueError(f"Got {len(times)} spike times but {len(ids)} unit ids; give one unit id per spike.")
        if not np.all(np.isfinite(times)):
            raise ValueError("Spike times must be finite numbers of seconds.")
        if np.any(np.diff(times) < 0):
            i = int(np.flatnonzero(np.diff(times) < 0)[0])
            raise ValueError(
                f"Spikes must be pushed in time order: spike {i + 1} ({times[i + 1]:.6f} s) comes before spike {i} "
                f"({times[i]:.6f} s). Sort the chunk first (order = np.argsort(times, kind='stable'))."
            )
        # the first push of a stream without a start_time anchors it (at its start, or 0)
        anchor = self.start_time if self.start_time is not None else float(start_time or 0.0)
        covered = self._covered if self.start_time is not None else anchor
        begin = start_time if start_time is not None else (times[0] if len(times) else None)
        if begin is not None and begin < covered - TIME_TOLERANCE:
            raise ValueError(
                f"This chunk goes back in time: it starts at {begin:.6f} s, but the stream already covers up to "
                f"{covered:.6f} s. Push chunks in time order, or call reset() to start a new block."
            )
        if start_time is not None and len(times) and times[0] < start_time - TIME_TOLERANCE:
            raise ValueError(f"A spike at {times[0]:.6f} s lies before the chunk's start_time {start_time:.6f} s.")
        end = float(end_time) if end_time is not None else max(covered, times[-1] if len(times) else covered)
        if end < covered - TIME_TOLERANCE or (len(times) and times[-1] > end + TIME_TOLERANCE):
            last = f"{times[-1]:.6f} s" if len(times) else "none"
            raise ValueError(
                f"end_time {end:.6f} s lies before data already pushed (the stream covers up to {covered:.6f} s; this "
                f"chunk's last spike: {last}). end_time is the time up to which every spike has been pushed."
            )
        index = self._unit_index(ids)
        if self.start_time is None:
            self.start_time = self._history_start = self._covered = anchor
        if start_time is not None and start_time > self._covered + TIME_TOLERANCE:
            self._gap(float(start_time))
        self._times = np.concatenate([self._times, times])
        self._units = np.concatenate([self._units, index])
        self._covered = max(self._covered, end)
        out = self._predict_due()
        self.compute_time_s += time.perf_counter() - tic
        return out

    def push_sorting_chunk(self, sorting, start_time: float | None = None, end_time: float | None = None,
                           segment_index: int = 0):  # fmt: skip
        """Push the spikes of a SpikeInterface sorting (or analyzer) in ``[start_time, end_time)``.

        Replays a recorded sorting, or pushes a sorting that holds one chunk (the threshold
        crossings of a stretch of recording, say). Its unit ids must be the decoder's
        ``unit_ids``. The times are those of :meth:`push`: ``start_time`` None follows on the
        previous push, ``end_time`` None stops at the sorting's last spike.

        Returns
        -------
        StreamPredictions
            As :meth:`push`.
        """
        sorting = as_sorting(sorting)
        replayed = self._replayed
        if replayed is None or replayed[0] is not sorting or replayed[1] != segment_index:  # read it once
            times, unit_index = segment_spikes(sorting, segment_index)
            self._replayed = (sorting, segment_index, times, np.asarray([str(u) for u in sorting.unit_ids])[unit_index])
        times, ids = self._replayed[2:]
        lo = 0 if start_time is None else np.searchsorted(times, start_time, side="left")
        hi = len(times) if end_time is None else np.searchsorted(times, end_time, side="left")
        return self.push(times[lo:hi], ids[lo:hi], start_time=start_time, end_time=end_time)

    # ---- internals -----------------------------------------------------------------------------
    def _unit_index(self, ids: np.ndarray) -> np.ndarray:
        try:
            return np.fromiter((self._position[str(u)] for u in ids), dtype=np.int64, count=len(ids))
        except KeyError:
            unknown = sorted({str(u) for u in ids} - set(self._position))
            raise ValueError(
                f"Spikes of units {unknown[:10]} that the decoder does not know: it decodes units {self.unit_ids[:10]}"
                f"{'...' if len(self.unit_ids) > 10 else ''} of session {self.session_id!r}. Push only those units "
                "(or name the stream's ids with unit_ids=)."
            ) from None

    def _gap(self, start: float) -> None:
        """Data missing from the end of the previous push to ``start``: history restarts there."""
        warnings.warn(
            f"No data from {self._covered:.3f} s to {start:.3f} s (a gap of {start - self._covered:.3f} s): "
            f"predictions until {start + self.window:.3f} s have too little context and are NaN.",
            InsufficientContextWarning,
            stacklevel=3,
        )
        self._history_start = start
        self._times, self._units = self._times[:0], self._units[:0]

    def _predict_due(self) -> StreamPredictions:
        last = int(np.floor((self._covered - self.start_time) / self.hop + 1e-6))
        k = np.arange(self._next, last + 1)
        due = self.start_time + k * self.hop
        due = due[due <= self._covered + TIME_TOLERANCE]
        dims = self.model.readout.out_features
        if len(due) == 0:
            return StreamPredictions(due, np.zeros((0, dims)))
        if len(due) == 1 and not self.model.training:  # the real-time case: one window, its own path
            values = self._predict_one(float(due[0]))[None]
        else:
            values = self._predict_batch(due)
        self._next += len(due)
        # spikes older than the next window's start can never be read again (a hop kept as slack)
        keep = self._times >= self.start_time + self._next * self.hop - self.window - self.hop
        self._times, self._units = self._times[keep], self._units[keep]
        return StreamPredictions(due, np.asarray(values, dtype=np.float64))

    def _predict_one(self, t: float) -> np.ndarray:
        """(D,) the prediction at ``t`` through :class:`CausalWindowStep`: NaN without a full window."""
        if not has_full_context(t, self._history_start, self._covered, self.window):
            return np.full(self.model.readout.out_features, np.nan)
        start = t - self.window
        lo, hi = np.searchsorted(self._times, [start, start + self.window], side="left")  # offline's window
        return self._step(self._times[lo:hi], self._units[lo:hi], t)

    def _predict_batch(self, due: np.ndarray) -> np.ndarray:
        """(K, D) predictions at several due times, in batches of windows as offline decoding runs."""
        tokens = SpikeTokens(
            times=self._times,
            unit_index=self._units,
            unit_ids=self._vocab_ids,
            session_id=self.session_id,
            start_time=self._history_start,
            end_time=self._covered,
        )
        return self.model.predict_segment(
            tokens, due, self.session_id, batch_size=self.batch_size, n_jobs=1, context="causal"
        )


class FalconDecoder:
    """A :class:`StreamingDecoder` behind the FALCON benchmark's decoder interface.

    FALCON serves one bin of spike counts per channel at a time; ``predict`` turns the counts of
    a bin into spikes spread evenly over the bin (the bin loses their timing) and returns the
    prediction at the bin's end. Nothing of FALCON is imported: to submit, derive a class from
    both ``falcon_challenge.interface.BCIDecoder`` and this one.

    Parameters
    ----------
    model : POYO or POYODecoder
        A causal model.
    bin_size : float, default: 0.02
        FALCON's bin width in seconds: the stream's hop.
    session_id : str or None
        The model's session; by default its only one.
    channel_ids : list or None
        The unit id of each column of the counts; by default the session's units, in the model's order.
    fill_value : float or "mean", default: NaN
        What ``predict`` returns before a full window of history: NaN, a number, or ``"mean"``
        (the session's mean behaviour in training), for evaluators that need finite output.
    batch_size : int, default: 1
        FALCON's batch: one stream, so only 1.
    """

    def __init__(self, model, bin_size: float = 0.02, *, session_id=None, channel_ids=None, fill_value=np.nan,
                 batch_size: int = 1):  # fmt: skip
        self.set_batch_size(batch_size)
        self.stream = StreamingDecoder(model, hop=bin_size, session_id=session_id, unit_ids=channel_ids, start_time=0.0)
        self.bin_size = self.stream.hop
        if isinstance(fill_value, str):
            stats = self.stream.model.meta.get("normalization", {}).get(self.stream.session_id)
            if fill_value != "mean" or stats is None:
                raise ValueError(
                    f"fill_value must be a number or 'mean' (with the training statistics), got {fill_value!r}."
                )
            fill_value = np.asarray(stats["mean"], dtype=np.float64)
        self.fill_value = fill_value
        self._bin = 0

    def reset(self, dataset_tags=None) -> None:
        """A new session or block: history is forgotten (FALCON calls this when its data file changes)."""
        self.stream.reset(0.0)
        self._bin = 0

    def predict(self, neural_observations) -> np.ndarray:
        """The behaviour at the end of the next bin, from (C,) or (1, C) counts of that bin.

        Returns (D,) for (C,) counts, (1, D) for (1, C).
        """
        counts = np.asarray(neural_observations)
        flat = counts.reshape(-1) if counts.ndim == 1 or counts.shape[0] == 1 else None
        if flat is None or counts.ndim > 2:
            raise ValueError(
                f"FalconDecoder streams one session: give (C,) or (1, C) counts, got shape {counts.shape}."
            )
        if len(flat) != len(self.stream.unit_ids):
            raise ValueError(f"Got counts of {len(flat)} channels; the decoder reads {len(self.stream.unit_ids)}.")
        if np.any(flat < 0) or np.any(flat != np.round(flat)):
            raise ValueError("Counts must be whole numbers of spikes, not negative.")
        n = flat.astype(np.int64)
        channel = np.repeat(np.arange(len(n)), n)
        rank = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        start = self._bin * self.bin_size
        times = start + (rank + 0.5) / np.repeat(np.maximum(n, 1), n) * self.bin_size
        order = np.argsort(times, kind="stable")
        ids = np.asarray(self.stream.unit_ids)[channel[order]]
        values = self.predict_spikes(times[order], ids)
        return values[None] if counts.ndim == 2 else values

    def predict_spikes(self, spike_times, unit_ids) -> np.ndarray:
        """The behaviour at the end of the next bin from its spikes (times in seconds from the
        stream's start, inside the bin, in time order); (D,)."""
        start, end = self._bin * self.bin_size, (self._bin + 1) * self.bin_size
        out = self.stream.push(spike_times, unit_ids, start_time=start, end_time=end)
        self._bin += 1
        values = out.values[-1].copy()
        return np.where(np.isfinite(values), values, self.fill_value)

    def observe(self, neural_observations) -> None:
        """A bin whose prediction is not needed: it still enters the history."""
        self.predict(neural_observations)

    def on_done(self, dones) -> None:
        """End of a trial: the stream continues (trials of a session share their history)."""

    def set_batch_size(self, batch_size: int) -> None:
        if batch_size != 1:
            raise ValueError(f"FalconDecoder streams one session at a time: batch_size must be 1, got {batch_size}.")
        self.batch_size = 1

    @property
    def normalized_latency(self) -> float:
        """Decoding time over neural time since :meth:`reset` (FALCON's latency measure)."""
        return self.stream.normalized_latency
