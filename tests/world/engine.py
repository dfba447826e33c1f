"""The scripted world and its in-process serving as a real ``dspy.LM``.

A :class:`World` turns chat messages into a reply text. It parses what DSPy's adapters put
into a prompt (the signature instruction, the input field values, the output fields and
their types, and whether ChatAdapter markers or a JSON object are wanted), lets the first
matching :class:`Skill` answer, and renders the answer in the format the adapter parses.
A prompt no skill claims still gets a well-formed reply, with a placeholder per field.

:func:`scripted_lm` wraps a world in a ``dspy.LM`` through DSPy 3.4's canonical engine
protocol (``complete(Request) -> Response``), so every DSPy layer above the engine
(adapters, history, callbacks, usage tracking) runs for real and no deprecated
compatibility path is touched.
"""

from __future__ import annotations

import json
import os
import re
import textwrap
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import dspy
from dspy.clients.engines.base import validate_request
from dspy.lm15 import Message, Request, Response, TextPart, Usage, response_to_events

from .noise import Block, Noise, NoiseState

if TYPE_CHECKING:
    # The stream event union is only exported from lm15's vendored types module.
    from dspy._vendor.lm15.types import StreamEvent

OBJECTIVE_MARKER = "In adhering to this structure, your objective is:"
_SECTION_RE = re.compile(r"^\[\[ ## (\w+) ## \]\]\s*$", re.MULTILINE)
_OUTPUT_FIELD_RE = re.compile(r"^\d+\. `(\w+)` \((.*?)\)(?::|$)", re.MULTILINE)
# What DSPy appends after the last input field of the final user message.
_REQUIREMENTS_RE = re.compile(r"\n\s*Respond with (?:the corresponding output fields|a JSON object)")


@dataclass(frozen=True)
class OutputField:
    name: str
    annotation: str = "str"  # as DSPy prints it: "str", "float", "list[str]", "Literal['a', 'b']"


@dataclass(frozen=True)
class Prompt:
    """One request, as a skill sees it."""

    role: str
    messages: tuple[Mapping[str, str], ...]
    system: str = ""
    instruction: str = ""  # the signature's instructions ("" when the prompt is not DSPy's)
    inputs: Mapping[str, str] = field(default_factory=dict)  # from the last user message
    output_fields: tuple[OutputField, ...] = ()
    output_format: Literal["chat", "json", "text"] = "text"

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.output_fields)

    @property
    def user_text(self) -> str:
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "user"), "")


def parse_prompt(role: str, messages: Sequence[Mapping[str, str]]) -> Prompt:
    """Read a DSPy ChatAdapter or JSONAdapter prompt; anything else parses as plain text."""
    messages = tuple({"role": m["role"], "content": m.get("content") or ""} for m in messages)
    system = "\n".join(m["content"] for m in messages if m["role"] in ("system", "developer"))
    user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")

    instruction = ""
    if OBJECTIVE_MARKER in system:
        tail = system.split(OBJECTIVE_MARKER, 1)[1]
        # DSPy indents the instruction block; every line after the marker's own line is indented.
        first, _, rest = tail.partition("\n")
        instruction = (first.strip() + "\n" + textwrap.dedent(rest)).strip()

    outputs: tuple[OutputField, ...] = ()
    if "Your output fields are:" in system:
        section = system.split("Your output fields are:", 1)[1].split(
            "All interactions will be structured", 1
        )[0]
        outputs = tuple(
            OutputField(name, annotation.strip()) for name, annotation in _OUTPUT_FIELD_RE.findall(section)
        )

    if "Outputs will be a JSON object" in system or "Respond with a JSON object" in user:
        output_format: Literal["chat", "json", "text"] = "json"
    elif "[[ ## completed ## ]]" in system or "[[ ## completed ## ]]" in user:
        output_format = "chat"
    else:
        output_format = "text"

    return Prompt(
        role=role,
        messages=messages,
        system=system,
        instruction=instruction,
        inputs=_sections(user),
        output_fields=outputs,
        output_format=output_format,
    )


def _sections(text: str) -> dict[str, str]:
    """The ``[[ ## name ## ]]`` sections of a user message, minus DSPy's trailing request."""
    headers = list(_SECTION_RE.finditer(text))
    sections = {}
    for i, header in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
        value = text[header.end() : end]
        if i + 1 == len(headers):
            tail = list(_REQUIREMENTS_RE.finditer(value))
            if tail:
                value = value[: tail[-1].start()]
        sections[header.group(1)] = value.strip("\n").strip()
    return sections


def placeholder(annotation: str) -> Any:
    """A value of the printed type that DSPy can parse, for fields no skill fills."""
    annotation = annotation.strip()
    if annotation.startswith("Literal["):
        options = re.findall(r"'([^']*)'|\"([^\"]*)\"", annotation)
        if options:
            single, double = options[0]
            return single or double
    if annotation == "int":
        return 0
    if annotation == "float":
        return 0.0
    if annotation == "bool":
        return False
    if annotation.startswith(("list", "tuple", "set")):
        return []
    if annotation.startswith("dict"):
        return {}
    return "N/A"


def render(prompt: Prompt, values: Mapping[str, Any]) -> str:
    """Reply text in the format the prompt's adapter parses, answering every output field."""
    if not prompt.output_fields:
        text = values.get("text", values.get("answer", "OK"))
        return text if isinstance(text, str) else json.dumps(text)
    answers = {
        f.name: values[f.name] if f.name in values else placeholder(f.annotation)
        for f in prompt.output_fields
    }
    if prompt.output_format == "json":
        return json.dumps(answers, ensure_ascii=False)
    parts = [
        f"[[ ## {name} ## ]]\n{value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)}"
        for name, value in answers.items()
    ]
    return "\n\n".join([*parts, "[[ ## completed ## ]]"])


@dataclass(frozen=True)
class Truth:
    """The right answer to a prompt, as far as the world knows it: what a noisy model gets wrong."""

    field: str  # the output field that carries it, e.g. "category"
    value: str
    options: tuple[str, ...]  # every answer the field can take; the wrong ones are the others


class Skill:
    """One thing the world knows how to answer.

    Subclasses set ``roles`` (the model names that have this skill; empty means every role)
    and implement ``matches`` and ``answer``. ``answer`` returns values by output field name;
    fields it leaves out get placeholders and extra keys are ignored, so one skill serves
    ``Predict`` (no ``reasoning``) and ``ChainOfThought`` alike. A skill whose answers noise may
    spoil also implements ``truth``.
    """

    roles: tuple[str, ...] = ()

    def matches(self, prompt: Prompt) -> bool:
        raise NotImplementedError

    def answer(self, prompt: Prompt) -> Mapping[str, Any]:
        raise NotImplementedError

    def truth(self, prompt: Prompt) -> Truth | None:
        """The right answer, for the noise mode; None (the default) keeps this skill noise-free."""
        return None


class World:
    """Deterministic answers for every role: same role and messages, same reply.

    Skills are role-gated: the task model does not know how to reflect, so passing the task
    LM as GEPA's reflection LM yields placeholder instructions, as a weak model would.
    ``calls`` counts replies per role (all serving paths share it).

    ``noise``, ``borderline``, ``regress`` and ``seed`` switch on the noise mode, ``block`` the
    blocking world (see :mod:`world.noise`). Given none of the noise knobs, the world reads
    ``GEPA_TEST_NOISE``; without ``block``, ``GEPA_TEST_BLOCK_AFTER``. Unset, the world is exactly
    the deterministic one. ``task`` (default ``GEPA_TEST_WORLD``, else ``"triage"``) picks the skills
    when ``skills`` is not given: ``"triage8"`` is the eight-rule task whose reflector noise can
    mislead (:mod:`world.triage8`).
    """

    def __init__(
        self,
        skills: Sequence[Skill] | None = None,
        *,
        noise: float | Noise | None = None,
        borderline: float | None = None,
        regress: float | None = None,
        seed: int | None = None,
        block: Block | None = None,
        task: str | None = None,
    ) -> None:
        self.task = task if task is not None else (os.environ.get(TASK_ENV, "").strip() or "triage")
        if skills is None:
            skills = default_skills(self.task)
        self.skills: list[Skill] = list(skills)
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        if isinstance(noise, Noise):
            self.noise = noise
        else:
            knobs = {"noise": noise, "borderline": borderline, "regress": regress, "seed": seed}
            given = {name: value for name, value in knobs.items() if value is not None}
            self.noise = Noise(**given) if given else Noise.from_env()  # type: ignore[arg-type]
        self._noise_state = NoiseState(self.noise)
        self.block = block if block is not None else Block.from_env()

    def add_skill(self, skill: Skill) -> None:
        self.skills.append(skill)

    def skill_for(self, prompt: Prompt) -> Skill | None:
        return next(
            (s for s in self.skills if (not s.roles or prompt.role in s.roles) and s.matches(prompt)),
            None,
        )

    def respond(self, role: str, messages: Sequence[Mapping[str, str]]) -> str:
        prompt = parse_prompt(role, messages)
        with self._lock:
            self.calls[role] += 1
        if self.block is not None:
            self.block.enter(role)  # may hold the call, then raise noise.Blocked
        skill = self.skill_for(prompt)
        if skill is None:
            return render(prompt, {})
        values = skill.answer(prompt)
        if self.noise.active:
            values = self._noisy(skill, prompt, values)
        return render(prompt, values)

    def _noisy(self, skill: Skill, prompt: Prompt, values: Mapping[str, Any]) -> Mapping[str, Any]:
        truth = skill.truth(prompt)
        given = values.get(truth.field) if truth is not None else None
        if truth is None or not isinstance(given, str):
            return values
        # The inputs, not the instruction, name the case: the same ticket is borderline under
        # every candidate instruction, and its call number counts across them.
        key = json.dumps(dict(prompt.inputs), sort_keys=True, ensure_ascii=False)
        # The eight-rule world counts calls per (instruction, inputs): two candidates asked the same
        # ticket at once (a paired re-draw) then get the same answers whichever thread comes first.
        counted = key if self.task == "triage" else f"{prompt.instruction}\0{key}"
        asked = self._noise_state.ask(counted)
        answer = self.noise.answer(key, asked, given=given, truth=truth.value, options=truth.options,
                                   stream=None if counted == key else counted)
        return values if answer == given else {**values, truth.field: answer}


TASK_ENV = "GEPA_TEST_WORLD"
TASKS = ("triage", "triage8")


def default_skills(task: str) -> tuple[Skill, ...]:
    """The skills of a world playing ``task``: ``triage`` (five conventions, the default) or
    ``triage8`` (eight, with a reflector noise can mislead: see ``triage8.py``)."""
    from .judge import JudgeSkill  # these modules import this one
    from .triage import TriageReflector, TriageStudent
    from .triage8 import Triage8Reflector, Triage8Student

    if task == "triage":
        return (TriageStudent(), TriageReflector(), JudgeSkill())
    if task == "triage8":
        return (Triage8Student(), Triage8Reflector(), JudgeSkill())
    raise ValueError(f"{TASK_ENV}: the world plays one of {', '.join(TASKS)}, got {task!r}")


def word_count(text: str) -> int:
    """Token counts for usage reports: words are close enough and need no tokenizer."""
    return len(text.split())


# --------------------------------------------------------------------------- in-process engine


def _text(parts: Any) -> str:
    if parts is None:
        return ""
    if isinstance(parts, str):
        return parts
    return "".join(getattr(p, "text", "") or "" for p in parts)


def request_messages(request: Request) -> list[dict[str, str]]:
    """OpenAI-style messages from a canonical request (text parts only)."""
    messages = []
    if request.system is not None:
        messages.append({"role": "system", "content": _text(request.system)})
    messages.extend({"role": m.role, "content": _text(m.parts)} for m in request.messages)
    return messages


class ScriptedEngine:
    """A DSPy 3.4 canonical engine answering from a :class:`World` as one ``role``.

    Defined at module level so ``dspy.LM.dump_state`` can record it; a loaded engine gets a
    fresh default world (a custom world is not serialized).
    """

    def __init__(self, role: str, world: World | None = None) -> None:
        self.role = role
        self.world = world if world is not None else World()

    def complete(self, request: Request) -> Response:
        validate_request(request)
        messages = request_messages(request)
        text = self.world.respond(self.role, messages)
        prompt_words = sum(word_count(m["content"]) for m in messages)
        return Response(
            id=None,
            model=f"scripted/{self.role}",
            message=Message.assistant([TextPart(text)]),
            finish_reason="stop",
            usage=Usage(input_tokens=prompt_words, output_tokens=word_count(text)),
        )

    def stream(self, request: Request) -> Iterator[StreamEvent]:
        return response_to_events(self.complete(request))

    def close(self) -> None:
        pass

    def dump_state(self) -> dict[str, Any]:
        return {"role": self.role}

    @classmethod
    def load_state(cls, state: Mapping[str, Any]) -> ScriptedEngine:
        return cls(str(state["role"]))


class AsyncScriptedEngine:
    """The async counterpart DSPy requires for ``acall``; the world is fast, so no real I/O."""

    def __init__(self, sync: ScriptedEngine) -> None:
        self.sync = sync

    async def complete(self, request: Request) -> Response:
        return self.sync.complete(request)

    async def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        for event in self.sync.stream(request):
            yield event

    async def aclose(self) -> None:
        pass

    def dump_state(self) -> dict[str, Any]:
        return self.sync.dump_state()

    @classmethod
    def load_state(cls, state: Mapping[str, Any]) -> AsyncScriptedEngine:
        return cls(ScriptedEngine.load_state(state))


def scripted_lm(role: str, world: World | None = None, **lm_kwargs: Any) -> dspy.LM:
    """A real ``dspy.LM`` named ``scripted/<role>`` whose engine answers from ``world``.

    DSPy's response cache is off unless ``cache=`` says otherwise: answers are instant anyway,
    and ``world.calls`` should count what the program really asked.
    """
    engine = ScriptedEngine(role, world)
    lm_kwargs.setdefault("cache", False)
    return dspy.LM(f"scripted/{role}", engine=engine, async_engine=AsyncScriptedEngine(engine), **lm_kwargs)
