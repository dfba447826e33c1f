"""Verdicts: pure statistics over per-example scores and the threshold decision built on them.

No I/O and no LM here, stdlib only: ``statistics`` holds the intervals, the paired test and the
resolution of a devset; ``thresholds`` turns them into a ``Verdict`` with sentences a person reads.
"""

from __future__ import annotations
