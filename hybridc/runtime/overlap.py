"""The Dice overlap of two spike tensors, 2|A and B| / (|A| + |B|), and its terms, which add
up over batches: one definition for verify, the data-set verify and the NIR float reference."""

import torch

__all__ = ["dice", "dice_counts"]


def dice_counts(spikes: torch.Tensor, reference: torch.Tensor) -> tuple:
    """(|A and B|, |A| + |B|): the terms of the Dice overlap, which add up over batches."""
    return float((spikes * reference).sum()), float(spikes.sum() + reference.sum())


def dice(both: float, total: float) -> float:
    return 2 * both / total if total else 1.0
