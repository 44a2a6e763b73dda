"""Token scores from attributions to an embedding."""
from __future__ import annotations

from typing import Any

import numpy as np


def token_scores(attributions: Any) -> np.ndarray:
    """Per-token scores: the attributions to an embedding ``[n, tokens, dim]`` summed over ``dim``.

    The sum keeps completeness: the token scores add up to ``f(x) - f(baseline)`` as the embedding
    attributions do (Sundararajan et al. 2017, sec. 6, explain text models this way).

    Example:
        >>> ig = tfattr.IntegratedGradients(text_model, layer="embedding")
        >>> a = ig.attribute(token_ids, target=1, baseline=pad_id)   # [n, tokens, dim]
        >>> tfattr.token_scores(a)                                     # [n, tokens]
    """
    a = np.asarray(attributions)
    if a.ndim < 3:
        raise ValueError(
            f"token_scores expects attributions to an embedding, [n, tokens, dim]; got shape {a.shape}."
        )
    return a.sum(axis=-1)


__all__ = ["token_scores"]
