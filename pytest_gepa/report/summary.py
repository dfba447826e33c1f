"""The GitHub job summary: where ``GITHUB_STEP_SUMMARY`` is set, the run's (or a merge's) Markdown
summary is appended to that file, followed, for each artifact the run recompiled, by its diff
against git's HEAD. GitHub shows at most 1 MiB per step summary and 65,536 characters in a
pull-request comment, so what is appended is cut to fit both, with a note saying so.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_gepa.errors import describe_error
from pytest_gepa.report.markdown import COMMENT_LIMIT, render_markdown
from pytest_gepa.report.model import TargetReport

ENV = "GITHUB_STEP_SUMMARY"
STEP_SUMMARY_BYTES = 1024 * 1024  # GitHub refuses a step summary larger than this
MIN_ROOM = 2000  # below this there is no room for a useful summary: say so instead


def step_summary_path(environ: Mapping[str, str] | None = None) -> Path | None:
    value = (os.environ if environ is None else environ).get(ENV, "")
    return Path(value) if value.strip() else None


def room_in(path: Path) -> int:
    """Characters that still fit: the comment limit, or less when earlier steps filled the file
    (one character may take four bytes in UTF-8, so the byte budget is divided by four)."""
    try:
        used = path.stat().st_size
    except OSError:
        used = 0
    return min(COMMENT_LIMIT, max(0, (STEP_SUMMARY_BYTES - used) // 4))


def compiled_diffs(reports: Sequence[TargetReport], limit: int) -> list[str]:
    """The Markdown diff of each artifact this run rewrote, against git's HEAD (a new one: all added)."""
    from pytest_gepa.report import artifact_diff

    out = []
    for report in reports:
        if report.status != "compiled":
            continue
        path = Path(report.artifact)
        try:
            new = artifact_diff.read_artifact(path)
        except artifact_diff.ArtifactInputError:
            continue  # a compiled row whose file is gone or unreadable has nothing to show
        try:
            old: dict[str, Any] | None = artifact_diff.parse_artifact(artifact_diff.committed_text(path),
                                                                      f"HEAD:{path.name}")
            old_label = f"HEAD:{path.name}"
        except artifact_diff.ArtifactInputError:
            old, old_label = None, "(not in git's HEAD: a new artifact)"
        rows = {str(row["id"]): row for row in report.per_example if "id" in row}
        diff = artifact_diff.compare(old, new, old_label=old_label, new_label=str(path), examples=rows)
        if diff.changed:
            out.append("\n" + artifact_diff.render_markdown(diff))
    if sum(map(len, out)) > limit:
        kept: list[str] = []
        for text in out:
            if sum(map(len, kept)) + len(text) > limit - 300:
                break
            kept.append(text)
        kept.append(f"\n{len(out) - len(kept)} more artifact diff(s) left out to fit; see each with "
                    "`pytest-gepa diff PATH`.\n")
        out = kept
    return out


def append_job_summary(path: Path, reports: Sequence[TargetReport], *, meta: dict[str, Any],
                       with_diffs: bool = True) -> str | None:
    """Append the summary (and the recompiled artifacts' diffs) to ``path``; a problem comes back as
    one line to show, never raised: a summary that cannot be written must not change the exit status."""
    room = room_in(path)
    if room < MIN_ROOM:
        return (f"${ENV} {str(path)!r} is already near GitHub's 1 MiB limit; the gepa summary was not added "
                "(the --gepa-report files hold it)")
    diffs = compiled_diffs(reports, room // 2) if with_diffs else []
    text = render_markdown(reports, meta=meta, limit=room - sum(map(len, diffs)))
    try:
        with path.open("a", encoding="utf-8") as out:
            out.write(text + "".join(diffs) + "\n")
    except OSError as error:
        return f"${ENV}: could not append the gepa summary to {str(path)!r} ({describe_error(error)})"
    return None
