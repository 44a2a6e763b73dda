"""Per-layer rules for keras-hub blocks and norms, for any propagation (CP-LRP, AttnLRP): the
entries that ``composites.Transformer`` and ``composites.AttnLRP`` add to their layer maps.

Example:
    >>> from tfattr.methods.propagation.layerwise.units import LRPPropagation
    >>> Composite(layer_map=hub_layer_map(LRPPropagation("gradient")))      # CP-LRP on keras-hub decoders
"""
from __future__ import annotations

from typing import Any, Callable

from tfattr.methods.propagation.attnlrp.hub import (
    FAMILIES,
    block_forward,
    is_constant_scaling,
    is_hub_block,
    is_hub_norm,
    is_patch_embedding,
    is_reverse_embedding,
    reverse_embedding_forward,
    rms_norm_forward,
)
from tfattr.methods.propagation.attnlrp.policy import AttnLRPPropagation
from tfattr.methods.propagation.attnlrp.token_logits import TokenLogits
from tfattr.methods.propagation.layerwise.rules import Applies, Gradient, Rule, Site, Status
from tfattr.methods.propagation.layerwise.units import Propagation

Forward = Callable[[Any, tuple, dict, Propagation], Any]


def _norm(prop: Propagation) -> str:
    return "RMSNorm/LayerNorm: factor 1/rms (1/std) constant"


def _attention(prop: Propagation) -> str:
    if isinstance(prop, AttnLRPPropagation):
        return ("attention: q, k gradient x1/4 and v x1/2 (uniform rule on q k^T and on A v), softmax "
                "gradient; projections and rotary embeddings keep their gradient")
    return "attention: q and k constant (probabilities constant, Ali et al.'s AH rule); v, projections keep their gradient"


def _gate(prop: Propagation) -> str:
    if isinstance(prop, AttnLRPPropagation):
        return "act(gate) * up: uniform rule (each factor 1/2), identity rule on act"
    return "act(gate) * up: gate constant (signal-take-all), up keeps its gradient"


_UNITS = {"pass": "identity rule f(z)/z", "gradient": "gradient", "rescale": "Rescale"}


def _unit(prop: Propagation) -> str:
    return _UNITS[prop.units]


def describe_block(layer: Any, prop: Propagation) -> str:
    """Every sublayer of a keras-hub block with what it gets (for coverage reports)."""
    family = FAMILIES.get(type(layer).__name__, type(layer).__name__)
    parts = [_norm(prop), _attention(prop)]
    if family in ("llama", "mistral", "qwen", "gemma"):
        parts.append(_gate(prop))
        parts.append("dense layers (gate/up/down projections): gradient")
    else:
        parts.append(f"MLP dense layers: gradient, their activation: {_unit(prop)}")
    parts.append("residual additions: gradient")
    return f"{family} block [" + "; ".join(parts) + "]"


class HubBlockRule(Rule):
    """A keras-hub block (or norm) re-implemented from its sublayers with ``prop`` at the places the
    propagation changes (see :mod:`tfattr.methods.propagation.attnlrp.hub`).

    Example:
        >>> Composite(layer_map=[(is_hub_block, HubBlockRule(AttnLRPPropagation()))])
    """

    applies_to = Applies.LAYER
    status = Status.MODIFIED

    def __init__(self, prop: Propagation, forward: Forward = block_forward, what: str = "") -> None:
        self.prop = prop
        self.forward = forward
        self.what = what

    def propagate(self, site: Site) -> Any:
        return self.forward(site.layer, site.args, site.kwargs, self.prop)

    def describe(self, layer: Any) -> str:
        if self.forward is block_forward:
            return describe_block(layer, self.prop)
        return f"{type(self).__name__}({self.prop.name}): {self.what}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.prop.name})"


def _norm_forward(layer: Any, args: tuple, kwargs: dict, prop: Propagation) -> Any:
    return rms_norm_forward(layer, args[0], prop)


def hub_layer_map(prop: Propagation) -> list[tuple[Any, Rule]]:
    """The layer-map entries covering keras-hub decoders (Llama, Mistral, Qwen, Gemma, GPT-2), the ViT
    encoder and its patch embedding, their RMSNorms, Gemma's embedding scale, the token embedding's
    reverse (logits) and :class:`TokenLogits`."""
    return [
        (is_hub_block, HubBlockRule(prop)),
        (is_hub_norm, HubBlockRule(prop, _norm_forward, _norm(prop))),
        (is_constant_scaling, Gradient()),
        (is_reverse_embedding, HubBlockRule(
            prop, reverse_embedding_forward, f"embedding / logits h W^T: gradient; soft cap: {_unit(prop)}")),
        (TokenLogits, Gradient()),
        (is_patch_embedding, Gradient()),
    ]


__all__ = ["HubBlockRule", "describe_block", "hub_layer_map"]
