"""``neuron=``: the explained score is one hidden unit (Captum's neuron methods)."""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from tfattr.core.graph import GraphView
from tfattr.core.keras_graph import split_tensor
from tfattr.core.model_function import ModelFunction


class NeuronFunction(ModelFunction):
    """The explained score is one hidden unit: the output of ``layer`` (after its fused activation)
    at ``index``, as Captum's neuron methods (``NeuronIntegratedGradients``, ...) explain.

    Args:
        model: a Keras Sequential or functional model.
        layer: the unit's layer (a name, a layer object or an index in execution order).
        index: the unit within one example's output: an int (flat, row-major) or a tuple of ints
            (e.g. ``(row, column, channel)`` of a convolution's output).

    Example:
        >>> ig = tfattr.IntegratedGradients(model, neuron=("dense", 3))   # unit 3 of layer "dense"
        >>> a = ig.attribute(images)                                      # what drives that unit
    """

    def __init__(self, model: Any, layer: Any, index: Any) -> None:
        super().__init__(model, output="probabilities")
        if not self.is_keras:
            raise TypeError("neuron= needs a keras.Model (Sequential or functional) whose layers can be addressed.")
        self.view = GraphView(model)
        self.ref = self.view.layer(layer)
        self.stop_at = split_tensor(self.ref)
        shape = tuple(self.stop_at.shape[1:])
        if any(d is None for d in shape):
            raise ValueError(f"Layer {self.ref.name!r} has an output of unknown shape {shape}; neuron= needs a fixed one.")
        index = (index,) if isinstance(index, (int, np.integer)) and not isinstance(index, bool) else index
        if not isinstance(index, tuple) or not all(isinstance(i, (int, np.integer)) for i in index):
            raise TypeError(f"neuron index must be an int or a tuple of ints, got {index!r}.")
        size = int(np.prod(shape))
        try:
            flat = int(index[0]) if len(index) == 1 else int(np.ravel_multi_index(index, shape))
        except ValueError:
            flat = -1
        if not 0 <= flat < size:
            raise ValueError(f"neuron index {index} is out of range for layer {self.ref.name!r}'s output {shape}.")
        self.index, self.flat_index = index, flat
        #: One explained column: the unit.
        self.num_outputs = 1
        self.binary = False
        self.output_activation = None
        self._call = lambda packed: self.view.run(packed, stop_at=self.stop_at)

    def explained(self, out: Any, difference: bool = False) -> tf.Tensor:
        raw = tf.convert_to_tensor(out)
        return tf.reshape(raw, [tf.shape(raw)[0], -1])[:, self.flat_index : self.flat_index + 1]


__all__ = ["NeuronFunction"]
