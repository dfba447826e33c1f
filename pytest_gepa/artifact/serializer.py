"""A DSPy program to and from the artifact's JSON, and the fingerprints that tell what changed.

Only JSON goes in: never pickle, and never an LM's state (it can hold api keys and headers); the
models used are recorded by name in the provenance instead.
"""

from __future__ import annotations

import json
from typing import Any

from pytest_gepa.errors import ArtifactError

# Keys that may carry credentials, removed wherever they appear in a program's state.
SECRET_KEYS = frozenset({"api_key", "api_base_key", "extra_headers", "headers", "authorization"})


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if str(k).lower() not in SECRET_KEYS}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def program_state(program: Any) -> dict[str, Any]:
    """The program's state as plain JSON, with every predictor's LM state dropped."""
    state = program.dump_state()
    for predictor_state in _predictor_states(state):
        predictor_state["lm"] = None
    try:
        plain: dict[str, Any] = _scrub(json.loads(json.dumps(state)))
        return plain
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"the program's state cannot be stored as JSON: {exc}") from exc


def _predictor_states(state: Any) -> list[dict[str, Any]]:
    """Every predictor state in a (possibly nested) module state: the dicts with a 'signature'."""
    if not isinstance(state, dict):
        return []
    if "signature" in state:
        return [state]
    found: list[dict[str, Any]] = []
    for value in state.values():
        found.extend(_predictor_states(value))
    return found


def instructions(program: Any) -> dict[str, str]:
    """Each predictor's instruction as plain text, for reviewers."""
    return {name: predictor.signature.instructions for name, predictor in program.named_predictors()}


def demos(state: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Each predictor's few-shot demos (from its stored state), for reviewers; empty ones left out."""
    return {name: list(value["demos"]) for name, value in state.items()
            if isinstance(value, dict) and value.get("demos")}


def load_program(program: Any, state: dict[str, Any], *, where: str) -> None:
    """Load stored state into the program, turning dspy's errors into one sentence naming the file."""
    for predictor_state in _predictor_states(state):
        if predictor_state.get("lm") is not None:
            raise ArtifactError(f"{where}: a predictor state carries an LM ('lm' must be null); "
                                "artifacts never store LM settings. Recompile it.")
    try:
        program.load_state(state)
    except Exception as exc:
        raise ArtifactError(f"{where}: the stored program does not load into this program "
                            f"({type(exc).__name__}: {exc}); was it edited by hand?") from exc
