"""``python -m pytest_gepa``: the same as the ``pytest-gepa`` command."""

from __future__ import annotations

import sys

from pytest_gepa.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
