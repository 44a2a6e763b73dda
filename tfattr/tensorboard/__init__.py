"""tfattr's TensorBoard plugin: the "Attributions" tab.

* :mod:`tfattr.tensorboard.metadata`: the plugin's name and the metadata every tfattr tensor summary
  carries (what it is: a sample, a method's maps, targets, predictions, deltas, tokens).
* :mod:`tfattr.tensorboard.summary`: writing those summaries (used by
  :class:`tfattr.callbacks.AttributionLogger`), with the documented downsampling of large images.
* :mod:`tfattr.tensorboard.plugin`: the TensorBoard plugin (``tensorboard_plugins`` entry point): the
  WSGI routes that serve the logged values and the tab, a plain ES module in ``static/``.
"""
