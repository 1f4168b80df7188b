"""POYO's forward pass for the one causal window that ends at a time: the streaming decoder's
per-hop path.

Every causal window holds the same latents, the same output query (at the window's end) and,
for each unit, a start and an end token at the window's two edges; only its spikes differ. So
:class:`CausalWindowStep` computes once what depends on the model alone: the latents' encoder
queries, each unit's (unturned) spike key and value, and the attention onto the edge tokens,
kept as its output and log-sum-exp. A call attends to the window's spikes only and merges the
two (:func:`~.layers.merge_attention`); the rest of the model runs as in :meth:`POYO.forward`.
The result is offline causal decoding's to float rounding (tests/test_streaming.py), at about
half its cost per window for the ``small`` preset (benchmarks/speed.py).
"""

from __future__ import annotations

import numpy as np
import torch

from ...core.spikes import TokenType, namespaced_unit_ids
from .cpu_kernels import gather_heads
from .layers import attention_with_lse, merge_attention, split_heads
from .rotary import apply_rotary


class CausalWindowStep:
    """Behaviour at the end of one causal window, from that window's spikes.

    Built from the model's weights as they are (build another after training it further).

    Parameters
    ----------
    model : POYO
        A model in eval mode.
    session_id : str
        The session decoded: its output query and normalisation.
    unit_ids : list of str
        The session's units, in the order of the ``unit_positions`` given to a call.
    """

    @torch.no_grad()
    def __init__(self, model, session_id: str, unit_ids: list[str]):
        model.check_readout_trained()
        self.model, self.session_id, self.length = model, session_id, model.sequence_length
        device, attention = model.device, model.enc_atn
        self.heads = attention.heads
        latent_index, latent_times = model.latent_tokens(1)
        self.latents = model.latent_emb(latent_index)  # (1, L, D)
        self.latent_rotary = model.rotary_emb(latent_times, turning_only=True)
        queries = split_heads(attention.to_q(attention.norm(self.latents)), self.heads)
        self.queries = apply_rotary(queries, self.latent_rotary, inplace=True)  # (1, H, L, Dh)

        vocab = torch.as_tensor(model.unit_emb.tokenizer(namespaced_unit_ids(session_id, unit_ids)), device=device)
        units, types = model.unit_emb(vocab), model.token_type_emb.weight
        self.spike_table = attention.to_kv(attention.norm_context(units + types[TokenType.SPIKE]))  # (U, 2 H Dh)
        edges = torch.stack([units + types[TokenType.START], units + types[TokenType.END]], dim=1).flatten(0, 1)
        edge_times = torch.tensor([0.0, self.length], device=device).repeat(len(unit_ids))[None]
        edge_keys, edge_values = self._turned_keys_values(
            attention.to_kv(attention.norm_context(edges)), torch.arange(len(edges), device=device), edge_times
        )
        self.edge_out, self.edge_lse = attention_with_lse(self.queries, edge_keys, edge_values)
        self.session_index = torch.tensor([model.session_emb.tokenizer(session_id)], device=device)

    def _turned_keys_values(self, table, rows, times):
        """(1, H, N, Dh) keys and values of the table's ``rows``, turned by the tokens' ``times``."""
        phasors = self.model.rotary_emb(times, turning_only=True)
        keys, values = gather_heads(table, rows[None], 2 * self.heads).chunk(2, dim=1)
        return apply_rotary(keys, phasors, inplace=True), apply_rotary(values, phasors, inplace=True)

    @torch.no_grad()
    def __call__(self, spike_times: np.ndarray, unit_positions: np.ndarray, end: float) -> np.ndarray:
        """(dim_out,) behaviour, in its units, at ``end`` from the spikes of ``[end - window, end)``.

        ``spike_times`` (S,) are seconds and ``unit_positions`` (S,) index ``unit_ids``.
        """
        model, device = self.model, self.model.device
        start = end - self.length  # as offline causal windows place it, so the times round alike
        if len(spike_times):
            times = torch.from_numpy((np.asarray(spike_times) - start).astype(np.float32)).to(device)[None]
            rows = torch.from_numpy(np.asarray(unit_positions, dtype=np.int64)).to(device)
            keys, values = self._turned_keys_values(self.spike_table, rows, times)
            out = merge_attention(self.edge_out, self.edge_lse, *attention_with_lse(self.queries, keys, values))
        else:
            out = self.edge_out.clone()  # turned back in place next
        out = apply_rotary(out, self.latent_rotary, inverse=True, inplace=True)
        latents = self.latents + model.enc_atn.to_out(out.transpose(1, 2).flatten(-2))
        latents = model._process(latents, self.latent_rotary)
        query_time = torch.tensor([[np.float32(end - start)]], device=device)
        standardised = model._read_behavior(latents, self.latent_rotary, self.session_index, query_time)
        return model.in_behavior_units(standardised[0, 0].float().cpu().numpy(), self.session_id)
