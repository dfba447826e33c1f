"""``pytest-gepa diff``: what changed between two versions of an artifact, as a reviewer reads it.

Each predictor's instruction as a word diff, the scores with their intervals before and after,
the examples whose score changed (with their inputs and outputs when a run's report gives them:
the artifact stores only example ids), and the provenance that changed. Artifacts are read as
plain JSON, not through the current schema, so the committed version written by an older
pytest-gepa still compares with the one just compiled.
"""

from __future__ import annotations

import difflib
import html
import json
import math
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_gepa.report.markdown import md_code, md_text
from pytest_gepa.report.model import fields, is_number, num

EXAMPLES_SHOWN = 20  # changed examples listed per artifact; the JSON files hold them all
NOT_PROVENANCE = ("trajectory", "lm_usage", "wall_time_s")  # run facts, not where the program came from


class ArtifactInputError(ValueError):
    """A file that cannot be compared: the message names it and says what to pass instead."""


def parse_artifact(text: str, where: str) -> dict[str, Any]:
    """An artifact's JSON; a report, another JSON or a broken file is an ``ArtifactInputError``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArtifactInputError(f"{where}: not valid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg}); "
                                 "pass an artifact (gepa_artifacts/.../<name>.json)") from None
    if isinstance(data, dict) and "schema" in data and "targets" in data:
        raise ArtifactInputError(f"{where}: a --gepa-report file, not an artifact; merge reports with "
                                 "`pytest-gepa merge`, or pass it to diff as --report for examples' inputs")
    if not isinstance(data, dict) or not {"schema_version", "target", "instructions"} <= set(data):
        raise ArtifactInputError(f"{where}: not a pytest-gepa artifact (no 'schema_version', 'target' and "
                                 "'instructions'); pass a file that `pytest --gepa-compile` wrote")
    return data


def read_artifact(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArtifactInputError(f"{str(path)!r}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactInputError(f"{str(path)!r}: cannot be read ({type(exc).__name__}: {exc})") from None
    return parse_artifact(text, repr(str(path)))


def committed_text(path: Path) -> str:
    """The file as git's HEAD has it (``git show HEAD:./name`` in its own folder, so any cwd works)."""
    try:
        done = subprocess.run(["git", "-C", str(path.parent), "show", f"HEAD:./{path.name}"], capture_output=True,
                              text=True, encoding="utf-8", timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ArtifactInputError(f"{str(path)!r}: could not ask git for its HEAD version ({exc}); pass the old "
                                 "version as a file: `pytest-gepa diff OLD.json NEW.json`") from None
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["git failed"])[-1].removeprefix("fatal: ")
        raise ArtifactInputError(f"{str(path)!r}: not in git's HEAD ({why}); pass the old version as a file: "
                                 "`pytest-gepa diff OLD.json NEW.json`")
    return done.stdout


# -- the comparison ------------------------------------------------------------------------------


@dataclass
class ExampleChange:
    id: str
    before: float | None
    after: float | None
    inputs: Any = None
    output: Any = None


@dataclass
class ArtifactDiff:
    old_label: str
    new_label: str
    target: str
    name: str
    instructions: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)  # (predictor, word ops)
    scores: list[tuple[str, str, str]] = field(default_factory=list)  # (what, before, after)
    examples: list[ExampleChange] = field(default_factory=list)
    unchanged_examples: int = 0
    provenance: list[tuple[str, str, str]] = field(default_factory=list)  # (key, before, after)

    @property
    def changed(self) -> bool:
        return bool(any(op != "same" for _, ops in self.instructions for op, _ in ops) or self.examples
                    or self.provenance or any(before != after for _, before, after in self.scores))


def compare(old: Mapping[str, Any] | None, new: Mapping[str, Any], *, old_label: str, new_label: str,
            examples: Mapping[str, Mapping[str, Any]] | None = None) -> ArtifactDiff:
    """``old`` None: a first compile, everything added. ``examples``: report rows by id (inputs, output)."""
    before: Mapping[str, Any] = old or {}
    diff = ArtifactDiff(old_label, new_label, str(new.get("target", "?")), str(new.get("name", "?")))
    old_instructions, new_instructions = _dict(before.get("instructions")), _dict(new.get("instructions"))
    for name in [*new_instructions, *(n for n in old_instructions if n not in new_instructions)]:
        diff.instructions.append((name, word_diff(old_instructions.get(name), new_instructions.get(name))))
    diff.scores = _scores(_dict(before.get("scores")), _dict(new.get("scores")))
    old_examples, new_examples = _per_example(before), _per_example(new)
    changes = []
    for example_id in sorted(set(old_examples) | set(new_examples)):
        was, now = old_examples.get(example_id), new_examples.get(example_id)
        if was is not None and now is not None and math.isclose(was, now, abs_tol=1e-9):
            diff.unchanged_examples += 1
            continue
        row = (examples or {}).get(example_id, {})
        changes.append(ExampleChange(example_id, was, now, row.get("inputs"), row.get("output")))
    # Largest fall first, then rises, then examples only one version has.
    changes.sort(key=lambda c: (c.before is None or c.after is None, (c.after or 0.0) - (c.before or 0.0), c.id))
    diff.examples = changes
    old_flat = _flatten({"provenance": before.get("provenance"), "optimizer": before.get("optimizer"),
                         "target": before.get("target"), "name": before.get("name")}) if old else {}
    new_flat = _flatten({"provenance": new.get("provenance"), "optimizer": new.get("optimizer"),
                         "target": new.get("target"), "name": new.get("name")})
    diff.provenance = [(key, old_flat.get(key, "-"), new_flat.get(key, "-"))
                       for key in sorted(set(old_flat) | set(new_flat)) if old_flat.get(key) != new_flat.get(key)]
    return diff


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def word_diff(before: str | None, after: str | None) -> list[tuple[str, str]]:
    """(op, text) pieces, ``same``, ``removed`` or ``added``, words and the white space between them kept."""
    old_words = re.findall(r"\s+|\S+", before or "")
    new_words = re.findall(r"\s+|\S+", after or "")
    out: list[tuple[str, str]] = []
    matcher = difflib.SequenceMatcher(a=old_words, b=new_words, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            out.append(("same", "".join(old_words[i1:i2])))
            continue
        if i2 > i1:
            out.append(("removed", "".join(old_words[i1:i2])))
        if j2 > j1:
            out.append(("added", "".join(new_words[j1:j2])))
    return out


def _score_text(devset: Mapping[str, Any], key: str) -> str:
    value = devset.get(key)
    if not is_number(value):
        return "-"
    ci = devset.get("ci")
    text = f"{value:.3f}"
    if key == "optimized" and isinstance(ci, (list, tuple)) and len(ci) == 2 and all(map(is_number, ci)):
        text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    return text


def _scores(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    old_dev, new_dev = _dict(old.get("devset")), _dict(new.get("devset"))
    level = new_dev.get("confidence", old_dev.get("confidence", 0.95))
    rows = [
        (f"devset score [{level * 100:g}% CI]" if is_number(level) else "devset score",
         _score_text(old_dev, "optimized"), _score_text(new_dev, "optimized")),
        ("devset baseline", _score_text(old_dev, "baseline"), _score_text(new_dev, "baseline")),
        ("val score", num(old.get("val_optimized")), num(new.get("val_optimized"))),
        ("val baseline", num(old.get("val_baseline")), num(new.get("val_baseline"))),
        ("devset examples", str(old_dev.get("n", "-")), str(new_dev.get("n", "-"))),
        ("draws per example", str(old_dev.get("samples", "-")), str(new_dev.get("samples", "-"))),
        ("resolution", num(old_dev.get("resolution")), num(new_dev.get("resolution"))),
    ]
    return [row for row in rows if row[1:] != ("-", "-")]


def _per_example(artifact: Mapping[str, Any]) -> dict[str, float]:
    """Each example's score: a number, or the mean of its recorded draws (a list, or an object with them)."""
    devset = _dict(_dict(artifact.get("scores")).get("devset"))
    out = {}
    for example_id, value in _dict(devset.get("per_example")).items():
        if isinstance(value, dict):
            value = value.get("mean", value.get("score", value.get("draws")))
        if isinstance(value, list):
            draws = [v for v in value if is_number(v)]
            value = sum(draws) / len(draws) if draws else None
        if is_number(value):
            out[str(example_id)] = float(value)
    return out


def _flatten(value: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, item in value.items():
            if key not in NOT_PROVENANCE:
                out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if value is None and not prefix:
        return {}
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    return {prefix: text}


# -- as text and as Markdown ---------------------------------------------------------------------


def _example_score(value: float | None) -> str:
    return "absent" if value is None else f"{value:.2f}"


def render_text(diff: ArtifactDiff) -> str:
    """For a terminal: git's ``--word-diff=plain`` marks, ``[-removed-]`` and ``{+added+}``."""
    lines = [f"artifact {diff.target} [{diff.name}]", f"--- {diff.old_label}", f"+++ {diff.new_label}"]
    if not diff.changed:
        return "\n".join([*lines, "no changes"]) + "\n"
    lines.append("")
    for name, ops in diff.instructions:
        lines.append(f"instruction of {name}:" + (" (unchanged)" if all(op == "same" for op, _ in ops) else ""))
        text = "".join(piece if op == "same" else (f"[-{piece}-]" if op == "removed" else f"{{+{piece}+}}")
                       for op, piece in ops)
        lines += ["    " + line for line in text.splitlines() or [""]]
    lines += ["", "scores (before -> after):"]
    lines += [f"    {what}: {was} -> {now}" + ("" if was != now else " (same)") for what, was, now in diff.scores]
    lines += ["", f"examples whose score changed: {len(diff.examples)} ({diff.unchanged_examples} unchanged)"]
    for change in diff.examples[:EXAMPLES_SHOWN]:
        lines.append(f"    {change.id}: {_example_score(change.before)} -> {_example_score(change.after)}")
        for label, value in (("inputs", change.inputs), ("output", change.output)):
            text = "; ".join(f"{n}: {t}" if n else t for n, t in fields(value))
            if text:
                lines.append(f"        {label}: {' '.join(text.split())[:200]}")
    if len(diff.examples) > EXAMPLES_SHOWN:
        lines.append(f"    ... and {len(diff.examples) - EXAMPLES_SHOWN} more")
    if diff.examples and not any(c.inputs for c in diff.examples):
        lines.append("    (inputs and outputs: pass --report REPORT.json of the run that compiled it)")
    if diff.provenance:
        lines += ["", "provenance that changed:"]
        lines += [f"    {key}: {_short(was)} -> {_short(now)}" for key, was, now in diff.provenance]
    return "\n".join(lines) + "\n"


def _short(text: str, limit: int = 120) -> str:
    if re.fullmatch(r"[0-9a-f]{32,}", text):
        return text[:12]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render_markdown(diff: ArtifactDiff) -> str:
    """For a job summary: the word diff in ``<pre>`` with ``<del>``/``<ins>``, the rest as tables."""
    lines = [f"### Artifact {md_code(diff.target, in_table=False)} \\[{md_text(diff.name)}\\]", "",
             f"{md_code(diff.old_label, in_table=False)} → {md_code(diff.new_label, in_table=False)}", ""]
    if not diff.changed:
        return "\n".join([*lines, "No changes."]) + "\n"
    for name, ops in diff.instructions:
        same = all(op == "same" for op, _ in ops)
        lines.append(f"Instruction of {md_code(name, in_table=False)}" + (" (unchanged):" if same else ":"))
        body = "".join(html.escape(piece, quote=False) if op == "same" else
                       f"<{'del' if op == 'removed' else 'ins'}>{html.escape(piece, quote=False)}"
                       f"</{'del' if op == 'removed' else 'ins'}>" for op, piece in ops)
        lines += ["", f"<pre>{body}</pre>", ""]
    lines += ["| score | before | after |", "|---|---:|---:|"]
    lines += [f"| {md_text(what)} | {md_text(was)} | {md_text(now)} |" for what, was, now in diff.scores]
    if diff.examples:
        lines += ["", f"<details><summary>{len(diff.examples)} example(s) changed score "
                  f"({diff.unchanged_examples} unchanged)</summary>", "",
                  "| id | before → after | inputs | output |", "|---|---:|---|---|"]
        for change in diff.examples[:EXAMPLES_SHOWN]:
            texts = ["; ".join(f"{n}: {t}" if n else t for n, t in fields(value))
                     for value in (change.inputs, change.output)]
            lines.append(f"| {md_code(change.id, in_table=True)} | {_example_score(change.before)} → "
                         f"{_example_score(change.after)} | {md_text(texts[0], 80)} | {md_text(texts[1], 80)} |")
        if len(diff.examples) > EXAMPLES_SHOWN:
            lines.append(f"\n... and {len(diff.examples) - EXAMPLES_SHOWN} more.")
        lines += ["", "</details>"]
    if diff.provenance:
        lines += ["", "<details><summary>Provenance that changed</summary>", "", "| what | before | after |",
                  "|---|---|---|"]
        lines += [f"| {md_code(key, in_table=True)} | {md_text(_short(was))} | {md_text(_short(now))} |"
                  for key, was, now in diff.provenance]
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"
