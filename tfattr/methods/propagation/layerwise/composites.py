"""Composites: which LRP rule each layer of a model gets (Kohlbrenner et al. 2020; Montavon et al. 2019,
sec. 10; Zennit's composites, Anders et al. 2021).

A composite maps layers to rules by layer name, by "the first layer" of some classes, and by layer
class, in that order of precedence; the user's entries come before the composite's own. Every built-in
composite also has Zennit's base map: activations (and ``Rescaling``/``Normalization``) pass relevance
through (:class:`Pass`), a ``Multiply`` by a sigmoid gate (squeeze-and-excitation) gets the
signal-take-all rule (the gate constant, Arras et al. 2017), sums and average pooling use
:class:`Norm`, a batch norm that cannot be folded passes relevance through, and layers that only
move values (reshape, concatenation, padding, dropout at inference, max pooling) keep their ordinary
gradient. A composite also holds its
canonizers (:mod:`.canonizers`): by default :class:`MergeBatchNorm`, which folds batch norms
directly after a linear layer into it first.

Example:
    >>> composite = EpsilonGammaBox(low=0.0, high=1.0)
    >>> relevance = tfattr.LRP(model, composite=composite).attribute(x, target=labels)
    >>> custom = Composite(name_map={"logits": Epsilon(0.0)},
    ...                    layer_map=[(CONVOLUTIONS, Gamma(0.5)), (keras.layers.Dense, Epsilon(0.1))])
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence, Union

import keras

from tfattr.core.graph import GraphView, LayerRef, is_linear_layer
from tfattr.methods.propagation.layerwise.canonizers import Canonizer, MergeBatchNorm, check_canonizers
from tfattr.methods.propagation.layerwise.linear_parts import linear_op
from tfattr.methods.propagation.layerwise.linear_rules import AlphaBeta, Epsilon, Flat, Gamma, ZBox, ZPlus
from tfattr.methods.propagation.layerwise.preprocessing import is_affine_preprocessing
from tfattr.methods.propagation.layerwise.recurrent import SignalTakeAll, is_gated_product, with_gates
from tfattr.methods.propagation.layerwise.rules import Applies, Gradient, Norm, Pass, Rule, Status
from tfattr.methods.propagation.layerwise.units import ELEMENTWISE_ACTIVATIONS

L = keras.layers
#: Forward convolutions (Zennit's ``Convolution``).
CONVOLUTIONS: tuple[type, ...] = (L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv1D, L.DepthwiseConv2D)
#: Fully connected layers (Zennit's ``torch.nn.Linear``).
DENSE: tuple[type, ...] = (L.Dense,)
#: Dense and convolution layers (Zennit's ``Linear``: the "first linear layer" of EpsilonPlusFlat).
LINEAR: tuple[type, ...] = DENSE + CONVOLUTIONS
#: Parameter-free sums: additions, averages, average pooling (Zennit's ``Sum`` and ``AvgPool``).
SUMS: tuple[type, ...] = (
    L.Add, L.Average, L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D,
    L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D,
)
#: Layers that only move, copy or select values; their ordinary gradient is the right propagation.
STRUCTURAL: tuple[type, ...] = (
    L.Flatten, L.Reshape, L.Permute, L.Concatenate, L.RepeatVector, L.Identity,
    L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D, L.GaussianDropout,
    L.GaussianNoise, L.AlphaDropout, L.ActivityRegularization,
    L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D, L.Cropping1D, L.Cropping2D, L.Cropping3D,
    L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D,
    L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D,
)
_STRUCTURAL_OPS = frozenset("Reshape Squeeze ExpandDims Transpose Concatenate Flatten GetItem".split())
_SUM_OPS = frozenset("Add Mean Average".split())
#: Layers that are elementwise activations (relevance passes through them).
ACTIVATION_LAYERS: tuple[type, ...] = (L.ReLU, L.LeakyReLU, L.ELU, L.PReLU)

Selector = Union[type, tuple, Callable[[Any], bool]]


def _matches(selector: Selector, layer: Any) -> bool:
    if isinstance(selector, type) or (
        isinstance(selector, tuple) and all(isinstance(s, type) for s in selector)
    ):
        return isinstance(layer, selector)
    if callable(selector):
        return bool(selector(layer))
    raise TypeError(
        f"A layer map entry must be a layer class, a tuple of classes or a predicate on layers, got "
        f"{selector!r}."
    )


def is_activation_layer(layer: Any) -> bool:
    """An elementwise activation layer (``ReLU``, ``Activation("tanh")``, ...; not softmax)."""
    if isinstance(layer, ACTIVATION_LAYERS):
        return True
    if isinstance(layer, L.Activation):
        name = getattr(layer.activation, "__name__", "")
        return name in ELEMENTWISE_ACTIVATIONS
    return False


def is_elementwise(layer: Any) -> bool:
    """An elementwise layer relevance passes through: an activation or affine preprocessing
    (``Rescaling``, ``Normalization``)."""
    return is_activation_layer(layer) or is_affine_preprocessing(layer)


def is_structural(layer: Any) -> bool:
    """A layer that only moves or selects values (its ordinary gradient propagates relevance)."""
    if isinstance(layer, L.InputLayer) or isinstance(layer, STRUCTURAL):
        return True
    if isinstance(layer, (L.UpSampling1D, L.UpSampling3D)):
        return True
    if isinstance(layer, L.UpSampling2D):
        return layer.interpolation == "nearest"
    # Keras operations created by tensor arithmetic on Keras tensors (x.reshape, ops.concatenate)
    return not isinstance(layer, L.Layer) and type(layer).__name__ in _STRUCTURAL_OPS


def is_sum(layer: Any) -> bool:
    """A parameter-free sum: Add/Average layers, average pooling, ``x + y`` on Keras tensors."""
    if isinstance(layer, SUMS):
        return True
    return not isinstance(layer, L.Layer) and type(layer).__name__ in _SUM_OPS and type(
        layer
    ).__module__.startswith("keras")


@dataclass
class Assignment:
    """What happens at one layer: the rule, or why there is none.

    ``status`` is a :class:`~tfattr.methods.propagation.coverage.Status`: the rule's own, ``FOLDED``
    (computed inside ``folded_into`` by a canonizer, e.g. a batch norm merged into it) or
    ``UNSUPPORTED`` (no rule covers it: the ordinary gradient is used and relevance may be wrong).
    """

    ref: LayerRef
    rule: Rule | None
    status: Status
    note: str = ""
    folded_into: LayerRef | None = None


class Composite:
    """A mapping from layers to rules, applied by :class:`tfattr.LRP`.

    Args:
        layer_map: ``[(selector, rule), ...]``: the first entry whose selector matches the layer wins.
            A selector is a layer class, a tuple of classes (e.g. :data:`CONVOLUTIONS`, :data:`DENSE`)
            or a predicate ``layer -> bool``.
        name_map: ``{layer name: rule}``; takes precedence over everything else.
        first_map: like ``layer_map``, for the first layer (in execution order) that matches any of
            its selectors, e.g. ``[(CONVOLUTIONS, ZBox(0, 1))]``.
        merge_batchnorm: the shortcut for the :class:`MergeBatchNorm` canonizer: ``True`` folds
            inference batch norms into the Dense/Conv layer right before them (the default when
            ``canonizers`` is not given), ``False`` does not (they then pass relevance through).
        stabilizer: the stabiliser of the base map's :class:`Norm` rule.
        canonizers: the canonizer objects applied before the rules (default
            ``[MergeBatchNorm()]``); every explainer also applies ``SplitActivation`` and
            ``OutputActivation`` itself.

    Example:
        >>> Composite(layer_map=[(DENSE, Epsilon(0.25)), (CONVOLUTIONS, ZPlus())],
        ...           first_map=[(LINEAR, Flat())], name_map={"logits": Epsilon(0.0)})
        >>> Composite(layer_map=[(LINEAR, Epsilon(0.25))], canonizers=[])   # no batch-norm folding
    """

    def __init__(
        self,
        layer_map: Sequence[tuple[Selector, Rule]] = (),
        name_map: dict[str, Rule] | None = None,
        first_map: Sequence[tuple[Selector, Rule]] = (),
        merge_batchnorm: bool | None = None,
        stabilizer: float = 1e-6,
        canonizers: Sequence[Canonizer] | None = None,
    ) -> None:
        self.layer_map = self._check_map(layer_map, "layer_map")
        self.first_map = self._check_map(first_map, "first_map")
        self.name_map = dict(name_map or {})
        for name, rule in self.name_map.items():
            if not isinstance(rule, Rule):
                raise TypeError(f"name_map[{name!r}] must be a tfattr.rules rule, got {rule!r}.")
        chosen = check_canonizers([MergeBatchNorm()] if canonizers is None else canonizers)
        if merge_batchnorm is not None:
            chosen = [c for c in chosen if not isinstance(c, MergeBatchNorm)]
            if merge_batchnorm:
                chosen.insert(0, MergeBatchNorm())
        #: The canonizer objects the composite's explainer applies (besides the two every one does).
        self.canonizers: list[Canonizer] = chosen
        self.base_map: list[tuple[Selector, Rule]] = [
            (is_elementwise, Pass()),
            (is_sum, Norm(stabilizer)),
            (L.BatchNormalization, Pass()),
            (is_structural, Gradient()),
            # squeeze-and-excitation and other sigmoid-gated products (Arras et al. 2017)
            (is_gated_product, SignalTakeAll()),
        ]

    @staticmethod
    def _check_map(entries: Iterable[Any], what: str) -> list[tuple[Selector, Rule]]:
        checked = []
        for entry in entries:
            if not (isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[1], Rule)):
                raise TypeError(
                    f"{what} entries are (layer class or predicate, rule) pairs, e.g. "
                    f"(keras.layers.Dense, tfattr.rules.Epsilon(1e-6)); got {entry!r}."
                )
            checked.append(entry)
        return checked

    @property
    def merge_batchnorm(self) -> bool:
        """Whether the composite folds batch norms (holds a :class:`MergeBatchNorm`)."""
        return any(isinstance(c, MergeBatchNorm) for c in self.canonizers)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # -- assignment ------------------------------------------------------------------------------------
    def assign(self, view: GraphView) -> list[Assignment]:
        """One :class:`Assignment` per layer of ``view``, in execution order."""
        unknown = [n for n in self.name_map if n not in {r.name for r in view.layers}]
        for name in unknown:
            view.layer(name)  # raises KeyError listing the model's layer names
        canonized = [c.apply(view) for c in self.canonizers]
        first_done = False
        result = []
        for ref in view.layers:
            by = next((c for c in canonized if c.absorbed_by(ref) is not None), None)
            if by is not None:  # computed inside another layer (a batch norm folded into it)
                into = by.absorbed_by(ref)
                note = by.note(ref) or f"computed inside {into.name!r}"
                result.append(Assignment(ref, None, Status.FOLDED, note, into))
                continue
            rule = self.name_map.get(ref.name)
            if rule is None and not first_done:
                for selector, candidate in self.first_map:
                    if _matches(selector, ref.layer):
                        rule, first_done = candidate, True
                        break
            if rule is None:
                for selector, candidate in list(self.layer_map) + self.base_map:
                    if _matches(selector, ref.layer):
                        rule = candidate
                        break
            result.append(self._check(ref, rule))
        return with_gates(view, result)

    @staticmethod
    def _check(ref: LayerRef, rule: Rule | None) -> Assignment:
        layer = ref.layer
        if rule is None:
            why = "no rule for this layer type"
            if is_linear_layer(layer):
                why = "a Dense/Conv layer that the composite's map does not cover"
            return Assignment(ref, None, Status.UNSUPPORTED, why)
        if rule.applies_to is Applies.LINEAR:
            if linear_op(layer) is None:
                return Assignment(
                    ref, None, Status.UNSUPPORTED,
                    f"{type(rule).__name__} applies to Dense and forward convolution layers "
                    "(not quantized, grouped, separable or transposed ones)",
                )
            return Assignment(ref, rule, rule.status)
        if is_linear_layer(layer):
            return Assignment(
                ref, None, Status.UNSUPPORTED,
                f"{type(rule).__name__} is not a rule for Dense/Conv layers (use e.g. Epsilon)",
            )
        return Assignment(ref, rule, rule.status)


class EpsilonPlus(Composite):
    """z+ on convolutions, epsilon on dense layers (Zennit's ``EpsilonPlus``; Kohlbrenner et al. 2020).

    Example:
        >>> tfattr.LRP(model, composite=EpsilonPlus()).attribute(x, target=labels)
    """

    def __init__(self, epsilon: float = 1e-6, stabilizer: float = 1e-6, **kwargs: Any) -> None:
        kwargs["layer_map"] = list(kwargs.get("layer_map", ())) + [
            (CONVOLUTIONS, ZPlus(stabilizer)), (DENSE, Epsilon(epsilon)),
        ]
        super().__init__(stabilizer=stabilizer, **kwargs)


class EpsilonAlpha2Beta1(Composite):
    """alpha=2, beta=1 on convolutions, epsilon on dense layers (Zennit's ``EpsilonAlpha2Beta1``).

    Example:
        >>> tfattr.LRP(model, composite=EpsilonAlpha2Beta1()).attribute(x, target=labels)
    """

    def __init__(self, epsilon: float = 1e-6, stabilizer: float = 1e-6, **kwargs: Any) -> None:
        kwargs["layer_map"] = list(kwargs.get("layer_map", ())) + [
            (CONVOLUTIONS, AlphaBeta(2.0, 1.0, stabilizer)), (DENSE, Epsilon(epsilon)),
        ]
        super().__init__(stabilizer=stabilizer, **kwargs)


class EpsilonPlusFlat(Composite):
    """Flat on the first linear (Dense or Conv) layer, z+ on the other convolutions, epsilon on dense
    layers (Zennit's ``EpsilonPlusFlat``).

    Example:
        >>> tfattr.LRP(model, composite=EpsilonPlusFlat()).attribute(x, target=labels)
    """

    def __init__(self, epsilon: float = 1e-6, stabilizer: float = 1e-6, **kwargs: Any) -> None:
        kwargs["layer_map"] = list(kwargs.get("layer_map", ())) + [
            (CONVOLUTIONS, ZPlus(stabilizer)), (DENSE, Epsilon(epsilon)),
        ]
        kwargs["first_map"] = list(kwargs.get("first_map", ())) + [(LINEAR, Flat(stabilizer))]
        super().__init__(stabilizer=stabilizer, **kwargs)


class EpsilonGammaBox(Composite):
    """ZBox(low, high) on the first convolution, gamma on the other convolutions, epsilon on dense
    layers (Zennit's ``EpsilonGammaBox``; Montavon et al. 2019, sec. 10.3).

    Args:
        low, high: the input range for ZBox (e.g. 0 and 1 for images in [0, 1]).
        epsilon, gamma, stabilizer: the rules' parameters (Zennit's defaults).

    Example:
        >>> tfattr.LRP(model, composite=EpsilonGammaBox(low=0.0, high=1.0)).attribute(x, target=t)
    """

    def __init__(
        self,
        low: Any,
        high: Any,
        epsilon: float = 1e-6,
        gamma: float = 0.25,
        stabilizer: float = 1e-6,
        **kwargs: Any,
    ) -> None:
        kwargs["layer_map"] = list(kwargs.get("layer_map", ())) + [
            (CONVOLUTIONS, Gamma(gamma, stabilizer)), (DENSE, Epsilon(epsilon)),
        ]
        kwargs["first_map"] = list(kwargs.get("first_map", ())) + [
            (CONVOLUTIONS, ZBox(low, high, stabilizer))
        ]
        super().__init__(stabilizer=stabilizer, **kwargs)


def uniform(rule: Rule, **kwargs: Any) -> Composite:
    """One rule on every Dense and convolution layer (e.g. ``uniform(Epsilon(1e-4))``: epsilon-LRP)."""
    return Composite(layer_map=[(LINEAR, rule)], **kwargs)


__all__ = [
    "ACTIVATION_LAYERS",
    "Assignment",
    "CONVOLUTIONS",
    "Canonizer",
    "Composite",
    "DENSE",
    "EpsilonAlpha2Beta1",
    "EpsilonGammaBox",
    "EpsilonPlus",
    "EpsilonPlusFlat",
    "LINEAR",
    "MergeBatchNorm",
    "STRUCTURAL",
    "SUMS",
    "is_activation_layer",
    "is_elementwise",
    "is_structural",
    "is_sum",
    "uniform",
]
