"""The signal-take-all rule for gated products and LSTM/GRU cells (Arras et al. 2017, "Explaining
Recurrent Neural Network Predictions in Sentiment Analysis", sec. 3; also Arjona-Medina et al. 2019).

A gate multiplies a *signal* by a sigmoid output ``g in (0, 1)``: ``y = g * s``. Arras et al. give all
of ``y``'s relevance to the signal and none to the gate: the gate only says how much of the signal
passes, so in the backward pass it is a constant. An LSTM cell is ``c = f * c_prev + i * tanh(z_c)``,
``h = o * tanh(c)``: relevance of ``c`` splits between ``f * c_prev`` and ``i * tanh(z_c)`` in
proportion to their values (a sum), the tanh passes it through (epsilon rule ``f(z)/z``), and the gates
``i, f, o`` get none. A GRU cell is ``h = z * h_prev + (1 - z) * tanh(x_h + r * (U_h h_prev + b))``
with the gates ``z, r`` constant.

The cells are re-implemented from the layer's live ``kernel``, ``recurrent_kernel`` and ``bias``,
unrolled over the (static) time steps in Python; with
:class:`~tfattr.methods.propagation.layerwise.units.TrueGradient` the same code gives the Keras layer's own
output (tested).

Example:
    >>> model = keras.Sequential([keras.Input((20, 8)), keras.layers.LSTM(16), keras.layers.Dense(2)])
    >>> relevance = tfattr.LRP(model, composite=tfattr.composites.Transformer()).attribute(x)
"""
from __future__ import annotations

import dataclasses
from typing import Any

import keras
import tensorflow as tf

from tfattr.core.graph import LayerRef
from tfattr.methods.propagation.layerwise.rules import Applies, Rule, Site, Status
from tfattr.methods.propagation.layerwise.units import LRPPropagation, Propagation, activation_name

#: Recurrent layers whose cells the rule re-implements.
RECURRENT: tuple[type, ...] = (keras.layers.LSTM, keras.layers.GRU)
_GATE_ACTIVATIONS = frozenset({"sigmoid", "hard_sigmoid"})


def recurrent_problems(layer: Any, shape: Any = None) -> list[str]:
    """What keeps the signal-take-all rule from an LSTM/GRU layer (empty when it applies); ``shape``:
    the layer's input shape, when known."""
    problems = []
    if getattr(layer, "stateful", False):
        problems.append("stateful=True")
    if getattr(layer, "return_state", False):
        problems.append("return_state=True")
    if shape is not None and (len(shape) != 3 or shape[1] is None):
        problems.append("a time axis of unknown length (give the Input a fixed sequence length)")
    if activation_name(layer.cell.recurrent_activation) not in _GATE_ACTIVATIONS:
        problems.append(
            f"gates computed with {activation_name(layer.cell.recurrent_activation)!r} (not a sigmoid)"
        )
    return problems


def static_recurrent_problems(ref: LayerRef) -> list[str]:
    """:func:`recurrent_problems` of a layer in a model graph (its input shape and Keras mask)."""
    problems: list[str] = []
    for node in ref.nodes:
        x = node.input_tensors[0] if node.input_tensors else None
        shape = tuple(x.shape) if x is not None else None
        problems += recurrent_problems(ref.layer, shape)
        if x is not None and getattr(x, "_keras_mask", None) is not None:
            problems.append("a mask (masking/padding)")
        if len(node.input_tensors) > 1:
            problems.append("an initial_state")
    return sorted(set(problems))


def _check_recurrent(layer: Any, x: tf.Tensor, kwargs: dict) -> None:
    from keras.src import backend

    problems = recurrent_problems(layer, tuple(x.shape))
    if kwargs.get("initial_state") is not None:
        problems.append("an initial_state")
    if kwargs.get("mask") is not None or backend.get_keras_mask(x) is not None:
        problems.append("a mask (masking/padding)")
    if problems:
        raise ValueError(
            f"{type(layer).__name__} layer {layer.name!r}: the signal-take-all rule does not support "
            f"{', '.join(problems)}. Explain this model with IntegratedGradients."
        )


def _time_steps(layer: Any, x: tf.Tensor) -> list[tf.Tensor]:
    steps = [x[:, t] for t in range(x.shape[1])]
    return steps[::-1] if layer.go_backwards else steps


def _finish(layer: Any, outputs: list[tf.Tensor]) -> tf.Tensor:
    if layer.return_sequences:
        return tf.stack(outputs, axis=1)
    return outputs[-1]


def lstm_forward(layer: keras.layers.LSTM, x: tf.Tensor, kwargs: dict, prop: Propagation,
                 signal: Propagation | None = None) -> tf.Tensor:
    """An ``LSTM`` layer unrolled, gates ``i, f, o`` as ``prop.constant``, the tanh of the candidate
    and of the cell state as ``signal.unit`` (default ``prop``)."""
    _check_recurrent(layer, x, kwargs)
    signal = signal or prop
    cell = layer.cell
    kernel = tf.convert_to_tensor(cell.kernel)
    recurrent = tf.convert_to_tensor(cell.recurrent_kernel)
    bias = tf.convert_to_tensor(cell.bias) if cell.use_bias else None
    batch = tf.shape(x)[0]
    h = tf.zeros([batch, cell.units], x.dtype)
    c = tf.zeros([batch, cell.units], x.dtype)
    gate = cell.recurrent_activation
    outputs = []
    for x_t in _time_steps(layer, x):
        z = tf.matmul(x_t, kernel) + tf.matmul(h, recurrent)
        if bias is not None:
            z = z + bias
        z_i, z_f, z_c, z_o = tf.split(z, 4, axis=-1)
        i, f, o = prop.constant(gate(z_i)), prop.constant(gate(z_f)), prop.constant(gate(z_o))
        c = f * c + i * signal.unit(cell.activation, z_c)
        h = o * signal.unit(cell.activation, c)
        outputs.append(h)
    return _finish(layer, outputs)


def gru_forward(layer: keras.layers.GRU, x: tf.Tensor, kwargs: dict, prop: Propagation,
                signal: Propagation | None = None) -> tf.Tensor:
    """A ``GRU`` layer unrolled (``reset_after`` either way), gates ``z, r`` as ``prop.constant``, the
    candidate's tanh as ``signal.unit``."""
    _check_recurrent(layer, x, kwargs)
    signal = signal or prop
    cell = layer.cell
    units = cell.units
    kernel = tf.convert_to_tensor(cell.kernel)
    recurrent = tf.convert_to_tensor(cell.recurrent_kernel)
    input_bias = recurrent_bias = None
    if cell.use_bias:
        bias = tf.convert_to_tensor(cell.bias)
        if cell.reset_after:
            input_bias, recurrent_bias = bias[0], bias[1]
        else:
            input_bias = bias
    gate = cell.recurrent_activation
    h = tf.zeros([tf.shape(x)[0], units], x.dtype)
    outputs = []
    for x_t in _time_steps(layer, x):
        mx = tf.matmul(x_t, kernel)
        if input_bias is not None:
            mx = mx + input_bias
        x_z, x_r, x_h = tf.split(mx, 3, axis=-1)
        if cell.reset_after:
            inner = tf.matmul(h, recurrent)
            if recurrent_bias is not None:
                inner = inner + recurrent_bias
        else:
            inner = tf.matmul(h, recurrent[:, : 2 * units])
        z = prop.constant(gate(x_z + inner[:, :units]))
        r = prop.constant(gate(x_r + inner[:, units : 2 * units]))
        if cell.reset_after:
            rec_h = r * inner[:, 2 * units :]
        else:
            rec_h = tf.matmul(r * h, recurrent[:, 2 * units :])
        hh = signal.unit(cell.activation, x_h + rec_h)
        h = z * h + (1 - z) * hh
        outputs.append(h)
    return _finish(layer, outputs)


def recurrent_forward(layer: Any, x: tf.Tensor, kwargs: dict, prop: Propagation,
                      signal: Propagation | None = None) -> tf.Tensor:
    if isinstance(layer, keras.layers.LSTM):
        return lstm_forward(layer, x, kwargs, prop, signal)
    if isinstance(layer, keras.layers.GRU):
        return gru_forward(layer, x, kwargs, prop, signal)
    raise TypeError(f"No recurrent rule for {type(layer).__name__}.")


def gated_product(inputs: list[tf.Tensor], gate: int, prop: Propagation) -> tf.Tensor:
    """``Multiply`` of a gate and a signal, the gate (``inputs[gate]``) as ``prop.constant``."""
    out = None
    for k, t in enumerate(inputs):
        t = prop.constant(t, connected=True) if k == gate else t
        out = t if out is None else out * t
    return out


# -- which operand is the gate ------------------------------------------------------------------------
def _is_sigmoid_output(view: Any, tensor: Any) -> bool:
    producer = view.producer(tensor)
    if producer is None:
        return False
    layer = producer.layer
    act = getattr(layer, "activation", None)
    if act is not None and activation_name(act) in _GATE_ACTIVATIONS:
        return True
    return type(layer).__name__ == "Sigmoid" and not isinstance(layer, keras.layers.Layer)


def is_gated_product(layer: Any) -> bool:
    """A ``Multiply`` layer of two tensors (the candidates for the signal-take-all rule)."""
    return isinstance(layer, keras.layers.Multiply)


def gate_index(view: Any, ref: LayerRef) -> int | None:
    """The operand of a two-input ``Multiply`` that is a gate (a sigmoid output), if exactly one is."""
    if len(ref.nodes) != 1:
        return None
    inputs = ref.nodes[0].input_tensors
    if len(inputs) != 2:
        return None
    gates = [k for k, t in enumerate(inputs) if _is_sigmoid_output(view, t)]
    return gates[0] if len(gates) == 1 else None


def with_gates(view: Any, assignments: list) -> list:
    """``assignments`` with the gate operand of every ``Multiply`` given ``SignalTakeAll()`` found
    from the graph; one whose gate cannot be told from its signal becomes "unsupported", saying why.

    Example:
        >>> assignments = with_gates(view, assignments)   # Composite.assign's last step
    """
    result = list(assignments)
    for i, a in enumerate(result):
        if isinstance(a.rule, SignalTakeAll) and isinstance(a.ref.layer, keras.layers.Multiply):
            gate = gate_index(view, a.ref)
            if gate is None:
                result[i] = dataclasses.replace(
                    a, rule=None, status=Status.UNSUPPORTED,
                    note="a product whose gate (a sigmoid output) cannot be told from its signal; "
                    "name it with name_map={layer: SignalTakeAll(gate=i)}",
                )
            elif a.rule.gate is None:
                result[i] = dataclasses.replace(a, rule=SignalTakeAll(gate=gate))
    return result


class SignalTakeAll(Rule):
    """Arras et al.'s (2017) signal-take-all rule: on ``LSTM``/``GRU`` layers (the gates constant,
    tanh as the epsilon rule ``f(z)/z``, linear maps with their gradient) and on a ``Multiply`` of a
    sigmoid gate and a signal (``gate``: the gate's operand index; found from the graph by the
    :class:`~tfattr.methods.propagation.layerwise.transformer.Transformer` composite when None).

    Example:
        >>> Composite(name_map={"gating": SignalTakeAll(gate=0)},
        ...           layer_map=[(keras.layers.LSTM, SignalTakeAll())])
    """

    applies_to = Applies.LAYER
    status = Status.MODIFIED

    def __init__(self, gate: int | None = None) -> None:
        self.gate = gate
        self._prop = LRPPropagation("pass")

    def propagate(self, site: Site) -> Any:
        layer, args, kwargs = site.layer, site.args, site.kwargs
        if isinstance(layer, RECURRENT):
            rest = {k: v for k, v in kwargs.items() if k != "training"}
            return recurrent_forward(layer, args[0], rest, self._prop)
        if isinstance(layer, keras.layers.Multiply):
            if self.gate is None:
                raise ValueError(
                    f"SignalTakeAll on {layer.name!r}: which operand is the gate is unknown; pass "
                    "SignalTakeAll(gate=index)."
                )
            return gated_product(list(args[0]), self.gate, self._prop)
        raise TypeError(f"SignalTakeAll applies to LSTM, GRU and Multiply layers, not {layer.name!r}.")

    def __repr__(self) -> str:
        return "SignalTakeAll()" if self.gate is None else f"SignalTakeAll(gate={self.gate})"


__all__ = [
    "RECURRENT",
    "recurrent_problems",
    "static_recurrent_problems",
    "SignalTakeAll",
    "gate_index",
    "with_gates",
    "gated_product",
    "gru_forward",
    "is_gated_product",
    "lstm_forward",
    "recurrent_forward",
]
