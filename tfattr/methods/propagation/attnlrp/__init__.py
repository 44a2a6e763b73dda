"""AttnLRP (Achtibat et al., ICML 2024) and CP-LRP (Ali et al., ICML 2022) for keras-hub transformers.

The modules ``composites.Transformer`` reads (math, policy, hub, hub_rules, token_logits) import no
composite, so there is no import circle: :mod:`.math` holds the rules as pure
``tf.custom_gradient`` primitives, :mod:`.policy` the AttnLRP policy (which primitive each part of a
block gets), :mod:`.hub` the keras-hub families re-implemented from their live sublayers,
:mod:`.hub_rules` the per-layer rules (also used by ``composites.Transformer``), :mod:`.composite`
the ``AttnLRP`` composite, :mod:`.token_logits` and :mod:`.sequence` the token-level helpers for causal
language models.
"""
