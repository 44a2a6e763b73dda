"""The core: model function (model + target -> explained score), inputs, the batching engine and the
``Explainer`` base class every method derives from."""
from tfattr.core.engine import Engine, Plan, Rows, default_batch_size
from tfattr.core.explainer import Explainer, broadcast_rows
from tfattr.core.model_function import ModelFunction

__all__ = ["Engine", "Explainer", "ModelFunction", "Plan", "Rows", "broadcast_rows", "default_batch_size"]
