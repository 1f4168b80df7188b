"""Optimisers and schedules: AdamW or LAMB (You et al., 2020: Adam whose step is rescaled,
layer by layer, by the ratio of the weight norm to the update norm; the optimiser POYO was
trained with), and the one-cycle learning-rate schedule."""

from __future__ import annotations

import math

import torch


def make_optimizer(params: list, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW or LAMB, with weight decay on weight matrices only (not biases or norms)."""
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "lamb":
        return Lamb(groups, lr=lr)
    raise ValueError(f"optimizer must be 'adamw' or 'lamb', got {name!r}.")


def one_cycle(step: int, total: int, warmup: float = 0.1) -> float:
    """One-cycle learning-rate factor: linear warm-up, then cosine decay to zero."""
    warm = max(1, int(warmup * total))
    if step < warm:
        return (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total - warm))
    return 0.5 * (1 + math.cos(math.pi * progress))


class Lamb(torch.optim.Optimizer):
    """Layer-wise adaptive moments optimiser.

    Parameters
    ----------
    params : iterable
        Parameters or parameter groups.
    lr : float, default: 1e-3
        Learning rate.
    betas : tuple of float, default: (0.9, 0.999)
        Moment decay rates.
    eps : float, default: 1e-6
        Denominator stabiliser.
    weight_decay : float, default: 0.0
        Decoupled weight decay, added to the update before the trust ratio.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                state["step"] += 1
                m, v = state["m"], state["v"]
                m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                m_hat = m / (1 - beta1 ** state["step"])
                v_hat = v / (1 - beta2 ** state["step"])
                update = m_hat / (v_hat.sqrt() + group["eps"])
                if group["weight_decay"]:
                    update.add_(p, alpha=group["weight_decay"])
                w_norm, u_norm = p.norm(), update.norm()
                trust = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
                p.add_(update, alpha=-group["lr"] * float(trust))
        return loss
