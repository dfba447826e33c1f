"""The ``dspy.Example`` that ``load_examples`` builds: one that carries its id without showing it.

This module imports dspy, so only ``load_examples`` imports it, inside the function.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dspy

from pytest_gepa.data.ids import ID_KEY


class IdentifiedExample(dspy.Example):  # type: ignore[misc, unused-ignore]  # dspy ships no types
    """A ``dspy.Example`` whose id (under ``ID_KEY``) stays out of ``toDict()`` and iteration too.

    dspy already hides ``dspy_`` keys from ``inputs()``, ``keys()``, ``items()``, ``len()`` and
    ``repr()``; ``copy()``, ``with_inputs()`` and ``labels()`` build ``type(self)``, so the id
    and this class survive them. A metric that calls ``gold.toDict()`` or loops over ``gold``
    would still see the id as a label, hence the two methods below.
    """

    def toDict(self) -> dict[str, Any]:  # dspy's name, not ours
        """The example's fields as a plain dict, without its id."""
        fields: dict[str, Any] = super().toDict()
        fields.pop(ID_KEY, None)
        return fields

    def __iter__(self) -> Iterator[str]:
        """The field names, without the id's key."""
        return (key for key in super().__iter__() if key != ID_KEY)
