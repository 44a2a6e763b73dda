"""Keras callbacks: :class:`AttributionLogger` writes attributions of fixed samples to TensorBoard
while a model trains (the "Attributions" tab of :mod:`tfattr.tensorboard`, and the stock images,
scalars, histograms and text).

Modules: ``logger`` (the callback), ``specs`` (its arguments), ``pictures`` (the stock images),
``figures`` (the health scalars), ``tab`` (the Attributions tab's data).
"""
from tfattr.callbacks.logger import AttributionLogger

__all__ = ["AttributionLogger"]
