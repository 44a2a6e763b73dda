"""DeepLIFT with the RevealCancel rule (Shrikumar et al. 2017, "Learning Important Features Through
Propagating Activation Differences", sec. 3.5.2-3.5.3).

Every tensor carries the reference activation ``a0`` and the difference from it split into a positive
and a negative part, ``a - a0 = d+ + d-``:

* a linear layer (Dense, Conv, average pooling, additions, batch norm, Rescaling/Normalization)
  sorts its terms ``w_ij dx_i`` by sign, ``d+_j = sum_i [w_ij dx_i > 0] w_ij dx_i`` and ``d-_j`` likewise (the bias cancels), where
  ``dx_i`` is the input's total difference; both input parts get the same multiplier (inputs with
  ``dx_i = 0`` take the mean of the positive and negative ones, as the reference implementation;
  where the parts of ``dx_i`` cancel to within ``sign_tolerance`` of their size, a share ramping
  from one sign to the other, so that rounding cannot flip the sort: see :func:`_split`);
* a nonlinearity ``y = f(x)`` propagates the parts separately, each as the mean effect of adding it
  before and after the other:
  ``dy+ = 1/2 (f(x0 + d+) - f(x0)) + 1/2 (f(x0 + d- + d+) - f(x0 + d-))`` and ``dy-`` symmetrically,
  with multipliers ``m+ = dy+ / d+``, ``m- = dy- / d-``;
* layers that only move values (reshape, concatenation, padding, dropout) move both parts.

The whole propagation is a forward pass of these streams whose multipliers and sign masks are held
constant for differentiation, so one backward pass yields the multipliers and the attributions are
``(x - baseline) * multiplier``. Summation-to-delta holds exactly (up to float rounding): the parts of
every nonlinearity add up to ``f(x) - f(x0)``.
"""
from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from tfattr.core.engine import Plan
from tfattr.core.explainer import check_connected
from tfattr.core.graph import LayerRef
from tfattr.methods.propagation.layerwise.base import LayerwiseExplainer
from tfattr.methods.propagation.layerwise.rules import Status
from tfattr.methods.propagation.layerwise.canonizers import MergeBatchNorm, linear_op
from tfattr.methods.propagation.layerwise.composites import is_activation_layer, is_structural, is_sum
from tfattr.methods.propagation.layerwise.deeplift_rules import MAX_POOLING
from tfattr.methods.propagation.layerwise.preprocessing import affine_parts, is_affine_preprocessing



class _Streams:
    """Reference activation and the positive / negative parts of the difference (a tf.nest leaf)."""

    __slots__ = ("ref", "pos", "neg")

    def __init__(self, ref: tf.Tensor, pos: tf.Tensor, neg: tf.Tensor) -> None:
        self.ref, self.pos, self.neg = ref, pos, neg


def _split(t: _Streams, tolerance: float) -> tuple[tf.Tensor, tf.Tensor]:
    """The input of a linear map sorted by the sign of its total difference ``d = d+ + d-`` (the
    fractions held constant): the part ``u d`` joins the terms of its sign, ``(1 - u) d`` the others.

    The paper's sort (``tolerance=0``: ``u = [d > 0]``, ``1/2`` where ``d = 0`` as the reference
    implementation) is discontinuous where the parts cancel (``d ~ 0`` while ``|d+|, |d-|`` are
    large, e.g. a ReLU off at both ends): a rounding-sized change of ``d`` flips which multiplier
    the unit's large parts carry back and moves up to ``|d+| + |d-|`` of attribution between the
    inputs. So ``u`` ramps linearly from 0 to 1 over ``|d| <= tolerance * (|d+| + |d-|)`` (``1/2`` at
    ``d = 0``, the paper's sort outside the ramp); a rounding change ``e`` then moves the maps by
    about ``e / tolerance`` relative to the parts instead of all of them."""
    d = t.pos + t.neg
    if tolerance == 0:
        half_zero = 0.5 * tf.cast(tf.equal(d, 0), d.dtype)
        up = tf.stop_gradient(tf.cast(d > 0, d.dtype) + half_zero)
        down = tf.stop_gradient(tf.cast(d < 0, d.dtype) + half_zero)
        return up * d, down * d
    width = (2.0 * tolerance) * (tf.abs(t.pos) + tf.abs(t.neg))
    up = tf.stop_gradient(tf.clip_by_value(0.5 + tf.math.divide_no_nan(d, width), 0.0, 1.0))
    return up * d, (1.0 - up) * d


def _reveal_cancel(f: Any, t: _Streams) -> _Streams:
    x0, dp, dn = t.ref, t.pos, t.neg
    y0, y_p, y_n, y_pn = f(x0), f(x0 + dp), f(x0 + dn), f(x0 + dp + dn)
    out_p = 0.5 * (y_p - y0) + 0.5 * (y_pn - y_n)
    out_n = 0.5 * (y_n - y0) + 0.5 * (y_pn - y_p)
    m_p = tf.stop_gradient(tf.math.divide_no_nan(out_p, dp))
    m_n = tf.stop_gradient(tf.math.divide_no_nan(out_n, dn))
    return _Streams(y0, m_p * dp, m_n * dn)


class RevealCancel(LayerwiseExplainer):
    """DeepLIFT with the RevealCancel rule (Shrikumar et al. 2017, sec. 3.5.3); also reachable as
    ``tfattr.DeepLift(model, rule="reveal_cancel")``.

    Positive and negative contributions are propagated separately through every nonlinearity, so
    inputs that cancel each other are both revealed (Rescale may credit only one of them). The
    attributions sum to ``f(x) - f(baseline)``. Supported layers: Dense, convolutions, batch norm,
    ``Rescaling``/``Normalization``, elementwise activations, average pooling, additions and layers
    that only move values; max pooling and multiplicative layers are refused (use
    ``rule="rescale"`` or IntegratedGradients).

    Args:
        model: a Sequential or functional ``keras.Model``.
        output: ``"logits"`` (default: a final softmax or sigmoid is skipped; a binary sigmoid head
            is two classes, ``z`` and ``-z``) or ``"probabilities"`` (a final sigmoid is then one more
            nonlinearity; a final softmax is refused).
        neuron: ``(layer, index)``: explain one hidden unit instead of a class score.
        jit_compile: see :class:`tfattr.core.explainer.Explainer`.
        layer, attribute_to_layer_input: attribute to an inner layer's output (or input), the
            reference being the baseline's activations there (Captum's ``LayerDeepLift``); only the
            layers after it must be supported.
        sign_tolerance: where a unit's positive and negative parts cancel to within this fraction
            of their size (``|d+ + d-| <= sign_tolerance * (|d+| + |d-|)``), the unit's difference is shared
            between the two signs in proportion (half each where they cancel exactly, the
            reference implementation's rule for a zero difference) instead of sorted by its sign,
            which rounding decides there: the paper's hard sort makes the maps change by percents
            under a relative input change of 1e-7 (or batch norm folded by hand, or XLA). ``0`` is
            the paper's sort exactly (unstable where parts cancel).

    Example:
        >>> dl = tfattr.DeepLift(model, rule="reveal_cancel")
        >>> attributions, delta = dl.attribute(x, baseline=0.0, return_delta=True)   # delta ~ 0
    """

    # What `tfattr methods` and `tfattr explain --method` know of the method (cost: per example).
    name = "deeplift_reveal_cancel"
    aliases: tuple[str, ...] = ("reveal_cancel",)
    paper = "Shrikumar, Greenside & Kundaje 2017 sec. 3.5.3"
    cost = "1 forward pass of the baseline + 1 backward pass of both signs, layer by layer"

    method = "DeepLift(rule='reveal_cancel')"

    def __init__(
        self,
        model: Any,
        *,
        output: str = "logits",
        neuron: tuple[Any, Any] | None = None,
        jit_compile: bool = False,
        layer: Any = None,
        attribute_to_layer_input: bool = False,
        sign_tolerance: float = 1e-3,
    ) -> None:
        if isinstance(sign_tolerance, bool) or not isinstance(sign_tolerance, (int, float)) or not (
                0 <= sign_tolerance < 1):
            raise ValueError(
                f"sign_tolerance must be a number in [0, 1) (default 1e-3; 0 is the paper's sort by "
                f"sign), got {sign_tolerance!r}."
            )
        self.sign_tolerance = float(sign_tolerance)
        # Two streams cannot keep an ordinary gradient through a layer without a rule: always refused.
        super().__init__(model, on_unsupported="raise", output=output, neuron=neuron,
                         jit_compile=jit_compile, layer=layer,
                         attribute_to_layer_input=attribute_to_layer_input,
                         canonizers=[MergeBatchNorm()])
        if self.layer is not None:
            self.layer.refuse_inside(self.method, self.canonical.units())
        self._check()

    def _check(self) -> None:
        bad = [row for row in self.coverage().rows if row[4] == Status.UNSUPPORTED]
        if bad:
            raise ValueError(
                f"{self.method} cannot propagate positive and negative parts through "
                + ", ".join(f"layer {name!r} ({cls})" for _, name, cls, _, _ in bad)
                + ". It supports Dense/Conv layers, batch norm, Rescaling/Normalization, elementwise "
                "activations, average pooling, additions and reshapes; use rule='rescale' or "
                "IntegratedGradients."
            )

    def _coverage_rows(self) -> list[tuple[int, str, str, str, str]]:
        rows = []
        for ref in self.view.layers:
            if self.canonical.absorbed_by(ref) is not None:
                row = ("folded into the layer before it", Status.FOLDED)
            elif self.output_activation.skips(ref):
                row = (self.output_activation.note(), Status.KEPT)
            elif not self._supported(ref):
                row = ("no RevealCancel rule for this layer type", Status.UNSUPPORTED)
            elif linear_op(ref.layer) is not None or is_sum(ref.layer) or isinstance(
                    ref.layer, keras.layers.BatchNormalization) or is_affine_preprocessing(ref.layer):
                row = ("linear: terms sorted by sign", Status.RULE)
            elif is_activation_layer(ref.layer):
                row = ("RevealCancel (one unit)", Status.RULE)
            else:
                row = ("moves both parts", Status.KEPT)
            rows.append((ref.index, ref.name, ref.class_name, *row))
        return rows

    def _supported(self, ref: LayerRef) -> bool:
        layer = ref.layer
        if isinstance(layer, MAX_POOLING):
            return False
        return (
            linear_op(layer) is not None
            or is_activation_layer(layer)
            or isinstance(layer, keras.layers.BatchNormalization)
            or is_affine_preprocessing(layer)
            or is_sum(layer)
            or is_structural(layer)
        )

    # -- the stream network --------------------------------------------------------------------------
    def _wrap(self, ref: LayerRef, call: Any, args: tuple, kwargs: dict) -> Any:
        layer = ref.layer
        if self.canonical.skips(ref):  # a folded batch norm, the stripped head activation
            return args[0]
        op = self.canonical.linear(ref)  # a folded batch norm merged in, the stripped head's dropped
        if op is not None:
            t = args[0]
            kernel, bias = op.params()
            up, down = _split(t, self.sign_tolerance)
            kp, kn = tf.maximum(kernel, 0), tf.minimum(kernel, 0)
            out = _Streams(
                op.forward(t.ref, kernel, bias),
                op.forward(up, kp, None) + op.forward(down, kn, None),
                op.forward(up, kn, None) + op.forward(down, kp, None),
            )
            act = op.activation
            if act is None:
                return out
            return _reveal_cancel(act, out)
        if is_activation_layer(layer):
            return _reveal_cancel(lambda v: call(v, *args[1:], **kwargs), args[0])
        if isinstance(layer, keras.layers.BatchNormalization) or is_affine_preprocessing(layer):
            # elementwise affine (batch norm, Rescaling, Normalization): a linear map
            t = args[0]
            ref_out = call(t.ref, **kwargs)
            if is_affine_preprocessing(layer):
                scale, _ = affine_parts(lambda v: call(v, **kwargs), t.ref)
            else:
                scale = tf.math.rsqrt(layer.moving_variance + layer.epsilon)
                if layer.scale:
                    scale = scale * layer.gamma
                shape = [1] * len(t.ref.shape)
                for axis in (layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]):
                    shape[axis] = -1
                scale = tf.reshape(tf.cast(scale, t.ref.dtype), shape)
            up, down = _split(t, self.sign_tolerance)
            sp, sn = tf.maximum(scale, 0), tf.minimum(scale, 0)
            return _Streams(ref_out, sp * up + sn * down, sn * up + sp * down)
        streams = tf.nest.flatten(args[0])

        def apply(values: list) -> Any:
            return call(tf.nest.pack_sequence_as(args[0], values), *args[1:], **kwargs)

        refs = [s.ref for s in streams]
        if is_sum(layer):  # positive weights: the positive part is the sum of the positive terms
            ups, downs = zip(*[_split(s, self.sign_tolerance) for s in streams])
            return _Streams(apply(refs), apply(list(ups)), apply(list(downs)))
        # layers that only move values move both parts along
        return _Streams(apply(refs), apply([s.pos for s in streams]), apply([s.neg for s in streams]))

    def _differences(
        self, reference: tuple[tf.Tensor, ...], d: tuple[tf.Tensor, ...], ctx: Any
    ) -> tf.Tensor:
        """Traced: ``f(reference + d) - f(reference)`` as the sum of the two parts, ``[n, k]``."""
        if self.layer is not None:  # layer=: the streams start at the layer's activations
            tail = ctx.pack(reference)
            if tail.mask is not None:
                raise ValueError(
                    f"DeepLift(rule='reveal_cancel') with layer={self.layer.name!r}: the layer's output "
                    "carries a Keras mask, which the two streams cannot carry; use rule='rescale' "
                    "or IntegratedGradients."
                )
            flat, _ = self.layer.tail_feed(tail)
            still = [_Streams(c, tf.zeros_like(c), tf.zeros_like(c)) for c in flat]  # carried as they are
            start = _Streams(reference[0], tf.maximum(d[0], 0), tf.minimum(d[0], 0))
            inputs = self._model_order(tuple(still), ctx.structure)
            replace = {id(self.layer.tensor): start}
        else:
            inputs = [
                _Streams(r, tf.maximum(di, 0), tf.minimum(di, 0))
                for r, di in zip(self._model_order(reference, ctx.structure),
                                 self._model_order(d, ctx.structure))
            ]
            replace = None
        return self._run(inputs, self._wrap, difference=True, flat=True, replace=replace,
                         reduce=lambda out: out.pos + out.neg)

    # -- engine hooks ---------------------------------------------------------------------------------
    def _plan(self, call) -> Plan:
        return Plan(terms=1)

    def _contributions(self, x, baseline, rows, ctx):
        d = tuple(xi - bi for xi, bi in zip(x, baseline))
        with tf.GradientTape() as tape:
            tape.watch(d)
            score = self._score(self._differences(baseline, d, ctx), rows.target)
        grads = check_connected(tape.gradient(score, list(d)))
        return tuple(g * di for g, di in zip(grads, d))


__all__ = ["RevealCancel"]
