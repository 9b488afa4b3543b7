"""The membership signal: logit-scaled confidence in the true class(es).

For logits z over C classes and a record's true class set y, with p = softmax(z),

    φ = log Σ_{c∈y} p_c − log Σ_{c∉y} p_c
      = logsumexp(z_y) − logsumexp(z_{¬y}),

computed from the logits directly (the softmax normaliser cancels), so it stays finite
where p_y rounds to 1 in float32 (Carlini et al. 2022, "Membership inference attacks
from first principles", eq. 4). For multi-label tasks with independent sigmoid outputs,
each label is its own two-class problem and φ_k = ±z_k (the sign is + when label k is
present): see :func:`multilabel_signal`.
"""

from __future__ import annotations

import torch


def logit_confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """φ for single-label classification.

    logits : (..., C) tensor; labels : (...) integer class indices. Computed in float64.
    Returns a tensor of shape (...) in float64.
    """
    z = logits.to(torch.float64)
    if z.shape[-1] < 2:
        raise ValueError(f"logit_confidence needs at least 2 classes, got logits of shape {tuple(z.shape)}")
    y = labels.to(torch.long).unsqueeze(-1)
    true = torch.zeros_like(z, dtype=torch.bool).scatter_(-1, y, True)
    neg_inf = torch.tensor(float("-inf"), dtype=z.dtype, device=z.device)
    log_in = torch.logsumexp(torch.where(true, z, neg_inf), dim=-1)
    log_out = torch.logsumexp(torch.where(true, neg_inf, z), dim=-1)
    return log_in - log_out


def multilabel_signal(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-label φ for multi-label sigmoid outputs: z_k if label k is present, else −z_k.

    logits, targets : (..., K). Returns (..., K) float64: log p(correct) − log p(wrong)
    of each label's own Bernoulli output.
    """
    z = logits.to(torch.float64)
    return torch.where(targets.to(torch.bool), z, -z)
