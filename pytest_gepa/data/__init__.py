"""Labeled examples: file readers with line numbers, ``ExampleSet``, example ids and splits.

``readers`` turns a file into rows, ``ids`` names each example, ``examples`` builds the
``ExampleSet``; ``yaml_source`` is the YAML parse that rubric files share. Nothing imported here
imports dspy (``identified`` does, and only ``load_examples`` imports it).
"""

from __future__ import annotations

from pytest_gepa.data.examples import ExampleSet, SplitSpec, load_examples, parse_ratios
from pytest_gepa.data.ids import example_id
from pytest_gepa.data.readers import SUFFIXES

__all__ = ["SUFFIXES", "ExampleSet", "SplitSpec", "example_id", "load_examples", "parse_ratios"]
