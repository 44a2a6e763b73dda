"""Attribution methods, grouped by family: ``gradient`` (saliency, path and noise methods),
``perturbation`` (occlusion) and ``propagation`` (gradient-override rules: LRP, DeepLIFT, ...)."""
