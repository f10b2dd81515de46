"""``python -m contrastkit``: the same as the ``contrastkit`` command."""

import sys

from contrastkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
