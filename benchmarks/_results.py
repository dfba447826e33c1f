"""The results: the table printed at the end of a run, and ``benchmarks/RESULTS.md``.

RESULTS.md holds the table of every ratio, automatic notes, and named blocks between
``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` markers: ``analysis`` (written by hand, kept across
regenerations), ``verdicts`` (``verdicts.py``) and ``noisy`` (``noisy_gates.py``). A block a run did
not regenerate is kept as it was, and so are the table rows of benchmarks a run did not run.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from _harness import REPO, Report

# resume, promotion: written by standalone scripts (resume.py, promotion.py) and pasted by hand
BLOCKS = ("analysis", "verdicts", "noisy", "resume", "promotion")


COLUMNS = ("metric", "plugin", "baseline", "ratio", "target", "ok?")


def table_rows(report: Report) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for row in report.rows:
        rows.append((f"[{row.section}] {row.metric}", row.plugin, row.baseline, row.ratio_text, row.target,
                     row.ok_text))
    return rows


def text_table(report: Report) -> str:
    rows = [COLUMNS, *table_rows(report)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = []
    for n, r in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(report: Report) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in table_rows(report):
        lines.append("| " + " | ".join(cell(c) for c in r) + " |")
    return "\n".join(lines)


def machine() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    def read(path: str, pattern: str) -> str:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError:
            return "unknown"
        match = re.search(pattern, text, re.MULTILINE)
        return match.group(1).strip() if match else "unknown"

    versions = []
    for dist in ("pytest-gepa", "dspy", "gepa", "litellm", "pytest", "pytest-xdist", "httpx", "openai"):
        try:
            versions.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            pass
    mem_kb = read("/proc/meminfo", r"^MemTotal:\s+(\d+)")
    return {
        "date": subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
        or datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "nproc": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip() or str(os.cpu_count()),
        "cpu": read("/proc/cpuinfo", r"^model name\s*:\s*(.+)$"),
        "memory": f"{int(mem_kb) / 1024 / 1024:.1f} GiB" if mem_kb.isdigit() else "unknown",
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": ", ".join(versions),
    }


def checkout() -> str:
    """The commit measured, and whether the plugin's sources differ from it (others edit concurrently)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = [line.split(maxsplit=1)[-1] for line in git("status", "--porcelain", "--", "pytest_gepa").splitlines()]
    return f"{commit}" + (f" plus uncommitted changes to {', '.join(dirty)}" if dirty else " (pytest_gepa/ clean)")


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text(encoding="utf-8").split()[:3])
    except OSError:
        return "unknown"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def kept_block(text: str, name: str) -> str:
    """Block ``name`` of an earlier RESULTS.md, markers included; "" when it has none."""
    begin, end = markers(name)
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        return ""
    return text[start: stop + len(end)]


def row_section(line: str) -> str | None:
    """``2a compile, equal budget`` for a table line ``| [2a compile, equal budget] ...``, else None."""
    match = re.match(r"\| \[([^\]]+)\] ", line)
    return match.group(1) if match else None


def kept_rows(text: str, sections: Iterable[str]) -> list[str]:
    """The table lines of an earlier RESULTS.md whose section is not among ``sections`` (re-measured now)."""
    fresh = set(sections)
    return [line for line in text.splitlines() if row_section(line) not in (None, *fresh)]


def write_results(path: Path, report: Report, info: dict[str, str], command: str, loads: tuple[str, str],
                  elapsed: float, checkouts: tuple[str, str], blocks: Mapping[str, str]) -> None:
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    misses = [r for r in report.rows if r.ok is False]
    table = markdown_table(report).splitlines()
    earlier = kept_rows(old, {row.section for row in report.rows})
    lines = [
        "# pytest-gepa benchmark results",
        "",
        "Generated by `benchmarks/run.py` (see `benchmarks/README.md`); every ratio is plugin / baseline,",
        "both measured in this one run. Times are medians over the repeats, with [min-max].",
        "",
        f"- date: {info['date']}",
        f"- machine: {info['nproc']} cores (`nproc`), {info['cpu']}, {info['memory']} RAM, {info['os']}",
        f"- load average (1/5/15 min) at start: {loads[0]}; at end: {loads[1]}",
        f"- {info['python']}; {info['packages']}",
        f"- checkout: {checkouts[0]}" + ("" if checkouts[1] == checkouts[0] else
                                         f" at the start; {checkouts[1]} at the end (changed during the run)"),
        f"- command: `{command}`",
        f"- wall time of the whole benchmark: {elapsed:.0f} s",
        "",
        *table[:2],
        *sorted([*table[2:], *earlier], key=section_order),
        "",
        "## Automatic notes",
        "",
    ]
    if misses:
        lines.append("Missed targets: " + "; ".join(f"[{r.section}] {r.metric} ({r.ratio_text or r.plugin}, "
                                                   f"target {r.target})" for r in misses) + ".")
    else:
        lines.append("Every target with an ok? column measured in this run was met.")
    if earlier:
        sections = sorted({row_section(line) or "" for line in earlier})
        lines.append(f"- Rows of {', '.join(sections)} are kept from the previous RESULTS.md: this command did "
                     "not run them.")
    lines.extend(f"- {note}" for note in report.notes)
    lines.extend(["", "## Analysis", ""])
    for name in BLOCKS:
        begin, end = markers(name)
        block = f"{begin}\n{blocks[name].rstrip()}\n{end}" if name in blocks else kept_block(old, name)
        if name == "analysis" and not block:
            block = f"{begin}\n{end}"
        if block:
            lines.extend([block, ""])
    path.write_text("\n".join(lines), encoding="utf-8")


def section_order(line: str) -> tuple[str, int]:
    """Table lines by section number (1 start-up, 2a compile, ...); a stable sort keeps each one's order."""
    match = re.match(r"\| \[(\d+\w?)", line)
    return (match.group(1) if match else "~", 0)
