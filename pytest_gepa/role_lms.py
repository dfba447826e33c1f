"""Building the LMs of the three roles (task, reflection, judge) from litellm model strings.

Only dspy is imported here, and only when an LM is built. The engine is dspy's default choice; litellm
is imported only where dspy sends a model through it (then also to check the model's API key before
the first call, which ``--gepa-replay`` never asks for), so a replayed run never imports it.
"""

from __future__ import annotations

import os
from typing import Any

import pytest


def is_local_model(model: str) -> bool:
    """``local/<name>`` or a path to a ``.gguf`` file: the embedded model served on 127.0.0.1."""
    return model.startswith("local/") or model.lower().endswith(".gguf")


def missing_api_keys(model: str, lm: Any = None) -> list[str]:
    """The environment variables ``model``'s provider needs and cannot find (empty: all set, or unknown).

    Asked of the engine dspy picks for ``lm`` (the ``dspy.LM`` built for ``model``): its native engine
    names the one variable it reads, with no import; only a model dspy sends through litellm asks
    litellm (which is imported then anyway).
    """
    if lm is not None:
        native = _native_key(lm)
        if native is not None:
            return native
    return _litellm_missing_keys(model)


def _native_key(lm: Any) -> list[str] | None:
    """The key variable dspy's native engine would read for ``lm``, if missing; None when dspy would not
    serve ``lm`` natively (or cannot say)."""
    try:
        from dspy.clients.backend_selection import select_backend

        selection = select_backend(lm)
    except Exception:  # a model the native catalog cannot place: litellm's question
        return None
    resolution = selection.resolution
    if not selection.native or resolution is None:
        return None
    if "api_key" in selection.clients or getattr(resolution, "placeholder_key", None):
        return []
    name = getattr(resolution, "env_key", None)
    if getattr(resolution, "credential_policy", "key") != "key" or not name:
        return []
    return [] if os.environ.get(name, "").strip() else [str(name)]


def _litellm_missing_keys(model: str) -> list[str]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from unittest import mock

    # An empty variable (a CI secret that is not set) is as good as none, but litellm only asks
    # whether the name exists: it checks an environment without the empty ones. The LMs are built
    # before any optimizer thread starts, so the brief change is seen by no one else.
    empty = [name for name, value in os.environ.items() if not value.strip()]
    try:
        import litellm

        with mock.patch.dict(os.environ):
            for name in empty:
                del os.environ[name]
            checked = litellm.validate_environment(model=model)
    except Exception:  # a provider litellm cannot check is left to the first call
        return []
    if checked.get("keys_in_environment", True):
        return []
    return [str(name) for name in checked.get("missing_keys") or []]


def build_lm(model: str, *, retries: int, check_keys: bool = False) -> Any:
    """A ``dspy.LM`` for a litellm model string, retrying transient failures with backoff.

    The engine is dspy's own choice (``"auto"``): its native engine where it serves the model, litellm
    where it must. ``check_keys``: look for the provider's API key now and raise ``MissingAPIKey``
    without one, instead of letting each call fail (and retry) on it.
    """
    # Without this litellm downloads its price map at import; offline that costs seconds.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    if is_local_model(model):
        from pytest_gepa.local_model.lm import local_lm

        return local_lm(model, retries=retries)
    import dspy

    # dspy owns the retries and retries only transient errors: a 401 (a wrong or revoked key) is
    # raised at once. A *missing* key is one litellm reports as a retryable server error
    # ("Missing credentials"), hence check_keys.
    lm = dspy.LM(model, num_retries=retries)
    if check_keys:
        missing = missing_api_keys(model, lm)
        if missing:
            raise MissingAPIKey(model, missing)
    return lm


class MissingAPIKey(Exception):
    """A model string whose provider's API key is not in the environment."""

    def __init__(self, model: str, missing: list[str]) -> None:
        super().__init__(model, missing)
        self.model, self.missing = model, missing

    def message(self, role: str) -> str:
        names = " and ".join(self.missing)
        return (f"No API key for the {role} LM {self.model!r}: set {names} in the environment, pass another "
                f"model with --gepa-{role}-lm (ini gepa_{role}_lm), or override the gepa_{role}_lm fixture in "
                "conftest.py (an LM with its own api_key= or a local server).")


class MissingLM:
    """What a ``gepa_*_lm`` fixture gives when its LM cannot be had (no model configured, or no key
    for it): ``gepa`` requests the fixture (so a parametrized override makes a matrix) yet must fail
    the test, with one sentence, only when an LM is really needed."""

    def __init__(self, role: str, message: str | None = None) -> None:
        flag, ini = f"--gepa-{role}-lm", f"gepa_{role}_lm"
        self.message = message or (
            f"No {role} LM configured: pass {flag} MODEL (a litellm model string such as 'openai/gpt-4o-mini'), "
            f"set the ini key {ini}, or override the gepa_{role}_lm fixture in conftest.py.")

    def fail(self) -> None:
        pytest.fail(self.message, pytrace=False)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.fail()

    def __getattr__(self, name: str) -> Any:
        # A test that uses the fixture itself (lm.model, lm.forward, ...) reads the same sentence.
        if name.startswith("__"):
            raise AttributeError(name)
        self.fail()


def role_lm(role: str, model: str | None, *, retries: int, check_keys: bool) -> Any:
    """The LM of a ``gepa_*_lm`` fixture: built from its model string, else a ``MissingLM`` that
    fails the test using it with one sentence (for a missing provider key: the variable to set)."""
    if not model:
        return MissingLM(role)
    try:
        return build_lm(model, retries=retries, check_keys=check_keys)
    except MissingAPIKey as missing:
        return MissingLM(role, missing.message(role))
