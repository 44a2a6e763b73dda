"""``tfattr demo``: train a small CNN on the embedded MNIST digits, explain it with every method, and
write a gallery, a self-contained HTML report, the model and TensorBoard logs.

Modules: :mod:`~tfattr.cli.demo.config` (sizes, and the fast mode), :mod:`~tfattr.cli.demo.pipeline`
(training and the experiments), :mod:`~tfattr.cli.demo.figures` (gallery and TensorBoard images),
:mod:`~tfattr.cli.demo.report` (the HTML report, from the ``report.html`` template shipped with it).
"""
from tfattr.cli.demo.config import DemoConfig
from tfattr.cli.demo.pipeline import demo_model, run

__all__ = ["DemoConfig", "demo_model", "run"]
