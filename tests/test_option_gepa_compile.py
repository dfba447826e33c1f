"""``pytest --gepa-compile``: a real GEPA run through the plugin writes a complete artifact."""

from __future__ import annotations

import json

from conftest import TriageProject


def test_compile_beats_baseline_and_writes_every_section(triage_project: TriageProject) -> None:
    result = triage_project.compile()
    result.assert_outcomes(passed=1)
    artifact = json.loads(triage_project.artifact.read_text())
    assert set(artifact) == {"schema_version", "target", "name", "program", "instructions", "demos", "scores",
                             "provenance", "optimizer"}
    assert artifact["target"] == triage_project.nodeid
    scores = artifact["scores"]
    assert scores["val_optimized"] > scores["val_baseline"]
    assert scores["devset"]["optimized"] > scores["devset"]["baseline"]
    assert scores["devset"]["optimized"] >= 0.85
    assert len(scores["devset"]["per_example"]) == scores["devset"]["n"]
    instruction = artifact["instructions"]["predict"]
    assert instruction != "Classify the support ticket into one of: billing, claims, technical, account, shipping."
    provenance = artifact["provenance"]
    assert provenance["models"]["task"] and provenance["models"]["reflection"]
    assert {"dspy", "gepa", "pytest-gepa"} <= set(provenance["versions"])
    assert provenance["structure"]["predict"]["outputs"] == ["reasoning", "category"]
    optimizer = artifact["optimizer"]
    assert optimizer["metric_calls"] > 0 and optimizer["lm_usage"]["reflection"]["calls"] > 0
    result.stdout.fnmatch_lines(["*gepa*", "*test_triage_prompt*compile*compiled*"])
