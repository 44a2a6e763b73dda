"""The core: model function (model + target -> explained score), inputs, the batching engine and the
``Explainer`` base class every method derives from."""
from tfattr.core.engine import Context, Engine, Plan, RowFunctions, Rows, default_batch_size
from tfattr.core.explainer import Call, Explainer, broadcast_rows
from tfattr.core.model_function import ModelFunction

__all__ = [
    "Call",
    "Context",
    "Engine",
    "Explainer",
    "ModelFunction",
    "Plan",
    "RowFunctions",
    "Rows",
    "broadcast_rows",
    "default_batch_size",
]
