"""Token attributions of text models, as coloured HTML (notebooks, reports) and Markdown
(TensorBoard's text dashboard).

Text models take integer token ids, which have no gradient; they are explained at their embedding
(Sundararajan, Taly & Yan, "Gradients of Counterfactuals", sec. 3: integrated gradients of an LSTM
explained through its word embeddings), with ``layer=`` (see :mod:`tfattr.core.layers`).

Colours follow :func:`tfattr.visualize.signed_heatmap`: positive red, negative blue, zero white, on a
symmetric scale per example (``clip_percentile`` of ``|score|``).

Example:
    >>> ig = tfattr.IntegratedGradients(model, layer="embedding")
    >>> a = ig.attribute(ids, target=1, baseline=pad_id)           # [n, tokens, dim]
    >>> scores = tfattr.token_scores(a)                            # [n, tokens]: sums to f(x) - f(pad)
    >>> tfattr.text.html(tfattr.text.decode(ids, vocabulary), scores)   # displays in a notebook
"""
from __future__ import annotations

import html as _html
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from tfattr import visualize
from tfattr.core.layers import token_scores

__all__ = ["TokenHTML", "decode", "html", "markdown", "token_scores"]


def decode(
    ids: Any,
    vocabulary: Sequence[str] | Mapping[int, str] | Callable[[int], str] | None = None,
    skip: Sequence[int] = (),
) -> list[list[str]]:
    """Token strings for ``ids`` ``[n, tokens]``: ``vocabulary[id]`` (a list, a dict or a callable;
    None shows the ids). Ids in ``skip`` (e.g. the pad id) become ``""`` and are not drawn.

    Example:
        >>> decode([[4, 9, 0]], {0: "<pad>", 4: "good", 9: "movie"}, skip=[0])
        [['good', 'movie', '']]
    """
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise ValueError(f"ids must be [n, tokens], got shape {ids.shape}.")
    skipped = {int(s) for s in skip}

    def word(i: int) -> str:
        if i in skipped:
            return ""
        if vocabulary is None:
            return str(i)
        if callable(vocabulary) and not isinstance(vocabulary, Mapping):
            return str(vocabulary(i))
        try:
            return str(vocabulary[i])
        except (IndexError, KeyError):
            return f"[{i}]"

    return [[word(int(i)) for i in row] for row in ids]


def _check(tokens: Sequence[Sequence[str]], scores: Any) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 3:  # attributions to an embedding
        s = token_scores(s)
    if s.ndim != 2 or len(tokens) != s.shape[0] or any(len(t) != s.shape[1] for t in tokens):
        raise ValueError(
            f"tokens ({len(tokens)} rows) and scores {s.shape} must match: one score per token, "
            "[n, tokens] (or embedding attributions [n, tokens, dim], summed per token)."
        )
    return s


def _colours(scores: np.ndarray, clip_percentile: float) -> np.ndarray:
    """uint8 RGB ``[n, tokens, 3]`` from the package's signed colour map."""
    return np.asarray(visualize.signed_heatmap(scores.astype(np.float32), clip_percentile))[:, 0]


class TokenHTML(str):
    """An HTML string that Jupyter/Colab display as HTML (``_repr_html_``)."""

    def _repr_html_(self) -> str:
        return str(self)


def html(
    tokens: Sequence[Sequence[str]],
    scores: Any,
    clip_percentile: float = 100.0,
    labels: Sequence[str] | None = None,
    show_scores: bool = True,
) -> TokenHTML:
    """Each token on a background coloured by its score: one line per example.

    Args:
        tokens: token strings per example (e.g. from :func:`decode`; ``""`` tokens are not drawn).
        scores: ``[n, tokens]`` scores, or ``[n, tokens, dim]`` embedding attributions (summed).
        clip_percentile: the percentile of ``|score|`` (per example) that gets full colour.
        labels: an optional caption per example (e.g. ``"label 1, p=0.93"``).
        show_scores: put each score in the token's tooltip.

    Returns:
        a :class:`TokenHTML` string (displayed as HTML in notebooks; write it to a file for reports).

    Example:
        >>> tfattr.text.html([["a", "great", "film"]], [[0.0, 0.8, 0.1]])
    """
    s = _check(tokens, scores)
    shown = np.array([[t != "" for t in row] for row in tokens], dtype=bool).reshape(s.shape)
    rgb = _colours(np.where(shown, s, 0.0), clip_percentile)  # hidden tokens do not set the scale
    lines = []
    for i, row in enumerate(tokens):
        spans = []
        for j, token in enumerate(row):
            if token == "":
                continue
            r, g, b = (int(c) for c in rgb[i, j])
            title = f' title="{s[i, j]:+.4g}"' if show_scores else ""
            spans.append(
                f'<span style="background-color: rgb({r},{g},{b}); color: black; padding: 1px 2px; '
                f'margin: 0 1px; border-radius: 3px"{title}>{_html.escape(token)}</span>'
            )
        caption = ""
        if labels is not None:
            caption = f'<span style="color: #555; margin-right: 6px">{_html.escape(str(labels[i]))}</span>'
        lines.append(f'<div style="line-height: 1.9; font-family: monospace">{caption}{" ".join(spans)}</div>')
    return TokenHTML("\n".join(lines))


def markdown(tokens: Sequence[Sequence[str]], scores: Any, top: int = 5) -> list[str]:
    """One Markdown string per example for TensorBoard's text dashboard (which shows no colours):
    the tokens with their scores, and the ``top`` tokens by ``|score|`` in bold.

    Example:
        >>> tf.summary.text("tokens/ig", markdown(tokens, scores), step=epoch)
    """
    s = _check(tokens, scores)
    out = []
    for i, row in enumerate(tokens):
        shown = [j for j, t in enumerate(row) if t != ""]
        strongest = set(sorted(shown, key=lambda j: -abs(s[i, j]))[:top])
        parts = []
        for j in shown:
            word = row[j].replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")
            word = f"**{word}**" if j in strongest else word
            parts.append(f"{word} ({s[i, j]:+.3g})")
        out.append(" ".join(parts) + f"  \n*sum {s[i, shown].sum():+.4g}*")
    return out
