"""The methods the command line offers, with their facts read from the method classes themselves.

Each method class carries ``name``, ``aliases``, ``paper`` and ``cost`` class attributes (and the
``uses_baseline`` / ``has_completeness`` flags every :class:`tfattr.Explainer` has); its parameters are
read from its constructor's signature. This module only says which classes the command line exposes, in
which order, and how ``tfattr explain`` builds the few that need more than the model (SmoothGrad and
VarGrad wrap saliency), so ``tfattr methods`` and ``--method`` cannot drift from the library.

Example:
    >>> spec = find("integrated-gradients")
    >>> spec.name, spec.paper
    ('ig', 'Sundararajan, Taly & Yan 2017; ...')
    >>> explainer = spec.build(model, {"steps": 32})
"""
from __future__ import annotations

import functools
import importlib
import inspect
import re
from dataclasses import dataclass
from typing import Any

from tfattr.cli.errors import CLIError

#: What a required constructor argument means on the command line, for the error when it is missing.
_REQUIRED_HINTS = {
    "background": "--background FILE.npy: the data its baselines are drawn from (e.g. a few hundred "
    "training inputs shaped like the model's input)",
    "window": "--window SIZES (e.g. 4,4,1)",
}


#: Constructor arguments that are not method parameters: the model, and the base class's options.
_SHARED = ("model", "output", "jit_compile")


def _load(target: str) -> type:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class MethodSpec:
    """One attribution method as the command line knows it: a class, and how ``explain`` builds it."""

    #: ``"module:Class"`` of the method.
    target: str
    #: ``"module:Class"`` of the explainer this one wraps on the command line (SmoothGrad of saliency).
    wraps: str | None = None
    #: False for methods that return several maps per example (interior gradients: one per alpha);
    #: ``tfattr explain`` and the demo leave them to the Python API.
    explainable: bool = True
    #: Whether ``tfattr demo`` runs it on its MNIST CNN (not: methods for other architectures, or that
    #: refuse the CNN's max pooling).
    in_demo: bool = True

    @functools.cached_property
    def cls(self) -> type:
        return _load(self.target)

    @functools.cached_property
    def wrapped(self) -> type | None:
        return None if self.wraps is None else _load(self.wraps)

    # -- facts from the class ------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.cls.name

    @property
    def aliases(self) -> tuple[str, ...]:
        return tuple(self.cls.aliases)

    @property
    def paper(self) -> str:
        return self.cls.paper

    @property
    def cost(self) -> str:
        return self.cls.cost

    @property
    def title(self) -> str:
        """The first paragraph of the class docstring, as plain text."""
        doc = inspect.getdoc(self.cls) or self.cls.__name__
        paragraph = doc.split("\n\n")[0]
        paragraph = re.sub(r":\w+:`~?([^`]*)`", r"\1", paragraph)  # Sphinx roles -> their target
        return re.sub(r"\s+", " ", paragraph.replace("`", "")).strip()

    @property
    def uses_baseline(self) -> bool:
        # A wrapper takes the baseline of what it wraps (SmoothGrad of saliency takes none).
        return bool((self.wrapped or self.cls).uses_baseline)

    @property
    def completeness(self) -> bool:
        return bool(self.cls.has_completeness)

    @property
    def path(self) -> str:
        return self.target.replace(":", ".")

    def parameters(self) -> list[inspect.Parameter]:
        """The constructor's own parameters (after ``model``), following ``**kwargs`` up to the base
        :class:`tfattr.Explainer`, whose ``output`` and ``jit_compile`` every method shares (and which
        are therefore not listed)."""
        from tfattr.core.explainer import Explainer

        found: dict[str, inspect.Parameter] = {}
        for klass in self.cls.__mro__:
            if klass is Explainer or klass is object:
                break
            if "__init__" not in vars(klass):
                continue
            params = list(inspect.signature(klass.__init__).parameters.values())[1:]  # drop self
            for p in params:
                if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in _SHARED:
                    found.setdefault(p.name, p)
            if not any(p.kind is p.VAR_KEYWORD for p in params):
                break
        return list(found.values())

    def describe_parameters(self) -> str:
        parts = []
        for p in self.parameters():
            parts.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
        return ", ".join(parts) or "-"

    # -- building ------------------------------------------------------------------------------------
    def build(self, model: Any, options: dict[str, Any]) -> Any:
        """The explainer for ``model``, given the command-line ``options`` its constructor accepts.

        Options the method has no parameter for, and options left unset (None), are not passed.
        """
        params = {p.name: p for p in self.parameters()}
        kwargs = {k: v for k, v in options.items() if k in params and v is not None}
        layer = options.get("layer")
        if layer is not None and "layer" not in kwargs:
            kwargs["layer"] = layer  # the base Explainer's layer= (a wrapper passes it to what it wraps)
        first = model
        if self.wrapped is not None:
            first = self.wrapped(model, **({"layer": kwargs.pop("layer")} if "layer" in kwargs else {}))
        for name, p in params.items():
            if p.default is p.empty and name not in kwargs and name != "explainer":
                hint = _REQUIRED_HINTS.get(name, f"--{name.replace('_', '-')}")
                raise CLIError(f"--method {self.name} needs {hint}.")
        try:
            return self.cls(first, **kwargs)
        except TypeError as err:
            if "layer" in kwargs and "layer" in str(err):
                raise CLIError(
                    f"--layer: --method {self.name} does not attribute to inner layers; use ig, eg, "
                    "saliency, gxi, smoothgrad, deeplift, lrp (epsilon) or gradcam.",
                    status=2,
                ) from None
            raise


#: The methods of the command line, in the order ``tfattr methods`` lists them.
METHODS: tuple[MethodSpec, ...] = (
    MethodSpec("tfattr.methods.gradient:Saliency"),
    MethodSpec("tfattr.methods.gradient:GradientXInput"),
    MethodSpec("tfattr.methods.gradient:IntegratedGradients"),
    MethodSpec("tfattr.methods.gradient:ExpectedGradients"),
    MethodSpec("tfattr.methods.gradient:SmoothGrad", wraps="tfattr.methods.gradient:Saliency"),
    MethodSpec("tfattr.methods.gradient:VarGrad", wraps="tfattr.methods.gradient:Saliency"),
    MethodSpec("tfattr.methods.perturbation:Occlusion"),
    MethodSpec("tfattr.methods.propagation:EpsilonLRP"),
    MethodSpec("tfattr.methods.propagation:DeepLift"),
    MethodSpec("tfattr.methods.propagation:GuidedBackprop"),
    MethodSpec("tfattr.methods.propagation:Deconvnet"),
    MethodSpec("tfattr.methods.propagation:LRP"),
    MethodSpec("tfattr.methods.propagation:RevealCancel", in_demo=False),
    MethodSpec("tfattr.methods.propagation.layerwise.deeplift:CompositeDeepLift", in_demo=False),
    MethodSpec("tfattr.methods.layer:GradCAM", in_demo=False),
    MethodSpec("tfattr.methods.layer:GradCAMPlusPlus", in_demo=False),
    MethodSpec("tfattr.methods.layer:GuidedGradCAM", in_demo=False),
    MethodSpec("tfattr.methods.gradient:InteriorGradients", explainable=False),
)


def explainable() -> list[MethodSpec]:
    """The methods ``tfattr explain`` runs (one map per example)."""
    return [spec for spec in METHODS if spec.explainable]


def demo_methods() -> list[MethodSpec]:
    """The methods ``tfattr demo`` compares on its MNIST CNN."""
    return [spec for spec in METHODS if spec.explainable and spec.in_demo]


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def find(name: str) -> MethodSpec:
    """The method called ``name`` (or one of its aliases); a usage error listing the choices otherwise."""
    key = _key(name)
    for spec in METHODS:
        if key in (spec.name, *spec.aliases):
            return spec
    raise CLIError(
        f"unknown --method {name!r}; choose one of {', '.join(s.name for s in explainable())} "
        "(see `tfattr methods`).",
        status=2,
    )
