"""pytest-gepa: prompt optimization as a tested build step.

Importing this package must stay cheap: it is loaded by every pytest run through the
``pytest11`` entry point, so nothing here imports dspy, litellm or gepa.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
