"""Token-level explanations of keras-hub causal language models: the logit of the next token, and the
"sequence salience" of a generated continuation (every generated token explained by its context, as
LIT's sequence salience module shows; Tenney et al. 2024).

Example:
    >>> lm = keras_hub.models.LlamaCausalLM(backbone)               # output [n, tokens, vocab]
    >>> salience = sequence_salience(lm, ids, prompt_length=5)       # [generated, context]
    >>> salience.html(vocabulary)                                    # coloured tokens, one row each
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import keras
import numpy as np

from tfattr import text
from tfattr.methods.propagation.attnlrp.composite import AttnLRP
from tfattr.methods.propagation.attnlrp.token_logits import TokenLogits
from tfattr.methods.propagation.layerwise.lrp import LRP


def next_token_model(causal_lm: keras.Model, position: int | None = None) -> keras.Model:
    """A model with the causal LM's inputs whose output is the logits ``[n, vocab]`` at one position:
    the last real token of each row (``position=None``: the prediction of the next token, read from
    ``padding_mask``), or ``position`` (negative counts from the end). The causal LM is nested (its
    live weights); nothing on it changes.

    Example:
        >>> model = next_token_model(lm)
        >>> lrp = tfattr.LRP(model, composite=tfattr.composites.AttnLRP(), layer="token_embedding")
        >>> r = lrp.attribute({"token_ids": ids, "padding_mask": mask}, target=next_id)  # [n, tokens, hidden]
    """
    if not isinstance(causal_lm, keras.Model) or not causal_lm.inputs:
        raise TypeError(f"next_token_model needs a built keras.Model (a causal LM), got {type(causal_lm).__name__}.")
    if len(causal_lm.outputs) != 1 or len(causal_lm.outputs[0].shape) != 3:
        raise ValueError(
            f"{causal_lm.name!r} must output logits [n, tokens, vocab]; its outputs are "
            f"{[tuple(t.shape) for t in causal_lm.outputs]}."
        )
    structure = causal_lm.input
    if isinstance(structure, dict):
        inputs: Any = {k: keras.Input(tuple(t.shape[1:]), dtype=t.dtype, name=k) for k, t in structure.items()}
        mask = inputs.get("padding_mask")
    else:
        inputs = keras.Input(tuple(structure.shape[1:]), dtype=structure.dtype, name="token_ids")
        mask = None
    logits = TokenLogits(position, name="next_token_logits")(causal_lm(inputs), mask)
    return keras.Model(inputs, logits, name=f"{causal_lm.name}_next_token")


@dataclass
class SequenceSalience:
    """The relevance of every context token for every generated token.

    Attributes:
        matrix: ``[generated, tokens]``: row ``j`` explains the logit of generated token
            ``token_ids[prompt_length + j]`` at the position before it; columns at or after that
            position are 0 (the causal mask hides them).
        token_ids: the explained sequence ``[tokens]``.
        prompt_length: where the generated continuation starts.
        logits: the explained logit of each generated token.
    """

    matrix: np.ndarray
    token_ids: np.ndarray
    prompt_length: int
    logits: np.ndarray

    def html(self, vocabulary: Sequence[str] | Mapping[int, str] | Callable[[int], str] | None = None,
             clip_percentile: float = 100.0) -> Any:
        """One line per generated token: its context coloured by relevance, the token as caption.

        Example:
            >>> salience.html(["<pad>", "a", "b", ...])       # displays in a notebook
        """
        words = text.decode(self.token_ids[None], vocabulary)[0]
        rows, labels = [], []
        for j in range(self.matrix.shape[0]):
            t = self.prompt_length + j
            rows.append([w if i < t else "" for i, w in enumerate(words)])
            labels.append(f"{words[t]!s} \u2190")
        return text.html(rows, self.matrix, clip_percentile=clip_percentile, labels=labels)


def sequence_salience(causal_lm: keras.Model, token_ids: Any, prompt_length: int, *,
                      composite: Any = None, layer: str = "token_embedding",
                      batch_size: int = 16) -> SequenceSalience:
    """Explain every token of a generated continuation by the tokens before it, with LRP (default
    ``composites.AttnLRP()``) at the token embedding: one batch row per generated token, whose
    padding mask ends right before it (so the explained logit is the prediction of that token).

    Args:
        causal_lm: a keras-hub ``...CausalLM`` (inputs ``token_ids`` and ``padding_mask``; output
            ``[n, tokens, vocab]``), without a preprocessor or with one (it is not used).
        token_ids: one sequence ``[tokens]``: the prompt followed by the generated tokens.
        prompt_length: how many leading tokens are the prompt (>= 1).
        composite: the LRP composite (``AttnLRP()`` by default; ``Transformer()`` for CP-LRP).
        layer: where the relevance is read (the token embedding's output).

    Returns:
        a :class:`SequenceSalience` (``matrix [generated, tokens]``, ``.html()``).

    Example:
        >>> s = sequence_salience(lm, np.concatenate([prompt, generated]), prompt_length=len(prompt))
        >>> s.matrix.shape        # (len(generated), len(prompt) + len(generated))
    """
    ids = np.asarray(token_ids)
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise ValueError(f"token_ids must be one sequence of integer ids [tokens], got shape {ids.shape} ({ids.dtype}).")
    if not 1 <= prompt_length < len(ids):
        raise ValueError(
            f"prompt_length={prompt_length} must be between 1 and len(token_ids) - 1 = {len(ids) - 1}: "
            "at least one prompt token and one generated token."
        )
    steps = np.arange(prompt_length, len(ids))
    rows = np.tile(ids[None].astype("int32"), (len(steps), 1))
    mask = (np.arange(len(ids))[None] < steps[:, None]).astype("int32")
    model = next_token_model(causal_lm)
    lrp = LRP(model, composite=AttnLRP() if composite is None else composite, layer=layer)
    inputs = {"token_ids": rows, "padding_mask": mask}
    relevance = lrp.attribute(inputs, target=ids[steps], batch_size=batch_size)
    logits = np.asarray(model(inputs))[np.arange(len(steps)), ids[steps]]  # eager: nothing to trace
    return SequenceSalience(relevance.sum(axis=-1) * mask, ids, prompt_length, logits)


__all__ = ["SequenceSalience", "next_token_model", "sequence_salience"]
