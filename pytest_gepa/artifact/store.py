"""Where artifacts live and how they are read and written; it never decides *whether* to write.

Writes are atomic (a temporary file in the same directory, fsynced, then renamed over the old
one) and serialised by a file lock, so an interrupted compile or two parallel writers never leave
half a file. The lock lives in the temp directory, not beside the artifact, so it is never
committed by accident.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from pytest_gepa._io import LockTimeout, atomic_write
from pytest_gepa.artifact.model import SCHEMA_VERSION, Artifact
from pytest_gepa.errors import ArtifactError


@dataclass(frozen=True)
class ArtifactStore:
    """The files of one target: ``<name>.json`` and, after a rejected compile, ``<name>.rejected.json``."""

    path: Path

    @property
    def rejected_path(self) -> Path:
        return self.path.with_name(self.path.stem + ".rejected.json")

    def exists(self) -> bool:
        return self.path.is_file()

    def read(self) -> Artifact:
        """Parse and validate the artifact; every problem is an ArtifactError naming the file."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise
        except (OSError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{self.path}: cannot be read ({exc})") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"{self.path}: not valid JSON at line {exc.lineno}, column {exc.colno} "
                                f"({exc.msg}); the file is truncated or corrupt") from exc
        if not isinstance(data, dict):
            raise ArtifactError(f"{self.path}: expected a JSON object, found {type(data).__name__}")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            newer = isinstance(version, int) and version > SCHEMA_VERSION
            hint = (" (written by a newer pytest-gepa; upgrade it)" if newer
                    else " (written by an older pytest-gepa; recompile it)")
            raise ArtifactError(f"{self.path}: unknown schema_version {version!r}, this pytest-gepa reads "
                                f"version {SCHEMA_VERSION}{hint}")
        try:
            return Artifact.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"])
            raise ArtifactError(f"{self.path}: field {field!r}: {first['msg']} "
                                f"({exc.error_count()} problem(s) in all)") from exc

    def write(self, artifact: Artifact) -> None:
        self._write_atomically(self.path, artifact.to_json())
        self.rejected_path.unlink(missing_ok=True)

    def write_rejected(self, artifact: Artifact) -> None:
        self._write_atomically(self.rejected_path, artifact.to_json())

    def _write_atomically(self, path: Path, text: str) -> None:
        try:
            atomic_write(path, text)
        except LockTimeout as exc:
            raise ArtifactError(str(exc)) from None


def unused_files(directory: Path, names: set[str]) -> list[Path]:
    """Artifacts and cassettes in ``directory`` that belong to none of ``names`` (targets that ran)."""
    found = []
    for path in sorted(directory.glob("*.json")) + sorted(directory.glob("*.cassette.jsonl")):
        name = path.name.removesuffix(".cassette.jsonl").removesuffix(".rejected.json").removesuffix(".json")
        if name not in names:
            found.append(path)
    return found
