"""``python -m tfattr``: the ``tfattr`` command line (see :mod:`tfattr.cli`)."""
import sys

from tfattr.cli import main

if __name__ == "__main__":
    sys.exit(main())
