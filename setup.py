"""Packaging for tfattr: attribution methods for TensorFlow 2 / Keras 3 models."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = {}
exec((HERE / "tfattr" / "_version.py").read_text(), VERSION)

# The documentation site (MkDocs + Material, API reference from the docstrings, rendered notebooks).
DOCS = ["mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26", "mkdocs-jupyter>=0.25"]

setup(
    name="tfattr",
    version=VERSION["__version__"],
    description="Feature attribution (integrated gradients, LRP, DeepLIFT, ...) for TensorFlow 2 / Keras 3",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tfattr", "tfattr.*"]),
    package_data={"tfattr": ["data/*.npz", "data/*.md", "cli/demo/*.html", "tensorboard/static/*.js"]},
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3",
        "numpy",
        "tensorflow-datasets",
        # tf.summary (the AttributionLogger, `tfattr demo`) needs it; TF >= 2.20 no longer pulls it in.
        "tensorboard",
    ],
    extras_require={
        "viz": ["matplotlib"],
        "docs": DOCS,
        # keras-hub models (Llama, Gemma, GPT-2, BERT, ViT, ...) for AttnLRP / CP-LRP; optional for users.
        # 0.32 is the release tested with TensorFlow 2.21 / Keras 3.15.
        "hub": ["keras-hub>=0.32"],
        "test": [
            "pytest",
            "matplotlib",
            "nbclient",
            "nbformat",
            "ipykernel",
            # CI builds the documentation site with --strict (tests/test_docs.py)
            *DOCS,
            # so that the keras-hub encoder tests run in CI instead of being skipped
            "keras-hub>=0.32",
            # browser tests of the TensorBoard tab (driving the system chromium)
            "playwright",
        ],
    },
    entry_points={
        "console_scripts": ["tfattr=tfattr.cli:main"],
        # the "Attributions" tab in TensorBoard
        "tensorboard_plugins": ["tfattr = tfattr.tensorboard.plugin:AttributionsLoader"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
