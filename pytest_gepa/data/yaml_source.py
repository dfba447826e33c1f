"""YAML read once into both its node tree (for line numbers in messages) and its values.

Data files and rubric files both point users at the line at fault, so both parse through here
and turn ``YamlSyntaxError`` into their own error type.
"""

from __future__ import annotations

from typing import Any


class YamlSyntaxError(Exception):
    """Text that is not YAML: ``problem`` in PyYAML's words, ``line`` 1-based where known."""

    def __init__(self, problem: str, line: int | None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.line = line


def parse_yaml(text: str) -> tuple[Any, Any]:
    """``(root node or None, document)`` as ``yaml.safe_load`` would build it, from one parse."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        document = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        context = exc.context
        if context and exc.context_mark is not None and mark is not None and exc.context_mark.line != mark.line:
            context += f" (from line {exc.context_mark.line + 1})"
        # PyYAML splits its sentence in two: "expected a single document" + "but found another".
        problem = ", ".join(part for part in (context, exc.problem) if part) or "cannot parse"
        raise YamlSyntaxError(problem, mark.line + 1 if mark is not None else None) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(str(exc), None) from None
    finally:
        loader.dispose()
    return root, document
