"""Loading labeled examples: formats, splits, fingerprints, and the errors a user sees."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_gepa.data import ExampleSet, example_id, load_examples, parse_ratios
from pytest_gepa.errors import DataFileError

CATEGORIES = ["billing", "claims", "technical", "account", "shipping"]


def make_rows(count: int, start: int = 0) -> list[dict[str, str]]:
    return [
        {"ticket": f"Ticket number {i}: something went wrong", "category": CATEGORIES[i % 5]}
        for i in range(start, start + count)
    ]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_json(path: Path, rows: list[dict[str, Any]], *, wrapped: bool = False) -> Path:
    document: Any = {"examples": rows} if wrapped else rows
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict[str, Any]], *, bom: bool = False) -> Path:
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_yaml(path: Path, rows: list[dict[str, Any]], *, wrapped: bool = False) -> Path:
    document: Any = {"examples": rows} if wrapped else rows
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def load_error(path: Path, **kwargs: Any) -> str:
    kwargs.setdefault("inputs", ["ticket"])
    with pytest.raises(DataFileError) as info:
        load_examples(path, **kwargs)
    return str(info.value)


# --- formats ------------------------------------------------------------------------------------


def test_the_same_rows_in_every_format_give_the_same_set(tmp_path: Path) -> None:
    rows = make_rows(40)
    files = [
        write_jsonl(tmp_path / "data.jsonl", rows),
        write_json(tmp_path / "list.json", rows),
        write_json(tmp_path / "wrapped.json", rows, wrapped=True),
        write_csv(tmp_path / "data.csv", rows),
        write_csv(tmp_path / "bom.csv", rows, bom=True),
        write_yaml(tmp_path / "list.yaml", rows),
        write_yaml(tmp_path / "wrapped.yml", rows, wrapped=True),
    ]
    sets = [load_examples(path, inputs=["ticket"]) for path in files]
    reference = sets[0]
    assert len(reference) == 40
    assert reference.train and reference.val and reference.test
    for loaded in sets[1:]:
        assert loaded.fingerprint == reference.fingerprint, loaded.path
        assert loaded.splits == reference.splits, loaded.path
        assert loaded.ids == reference.ids, loaded.path
        assert [example.toDict() for example in loaded.examples] == rows, loaded.path


def test_rows_become_dspy_examples_with_inputs_and_labels(tmp_path: Path) -> None:
    rows = [{"ticket": "Refund me", "category": "billing", "priority": "high"}, *make_rows(3)]
    loaded = load_examples(write_jsonl(tmp_path / "data.jsonl", rows), inputs=["ticket"])
    first = loaded.examples[0]
    assert first.inputs().toDict() == {"ticket": "Refund me"}
    assert first.labels().toDict() == {"category": "billing", "priority": "high"}
    assert loaded.inputs == ("ticket",)
    assert loaded.labels == ("category", "priority")
    assert list(loaded) == loaded.examples
    assert loaded.path == tmp_path / "data.jsonl"


def test_jsonl_skips_blank_lines_and_counts_them_in_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"ticket": "a", "category": "x"}\n\n  \n{"category": "y"}\n', encoding="utf-8")
    message = load_error(path)
    assert message.startswith(f"{path}:4: ")
    assert "row is missing input field 'ticket' (fields: 'category')" in message


def test_csv_line_numbers_follow_quoted_cells_that_span_lines(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text('ticket,category\n"line one\nline two",billing\n"",claims\n', encoding="utf-8")
    assert load_error(path) == f"{path}:4: row has an empty value for input field 'ticket'"


def test_csv_skips_blank_rows_and_strips_header_names(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("ticket , category\r\nRefund me,billing\r\n,\r\n\r\nLost parcel,shipping\r\n")
    loaded = load_examples(path, inputs=["ticket"])
    assert [example.toDict() for example in loaded] == [
        {"ticket": "Refund me", "category": "billing"},
        {"ticket": "Lost parcel", "category": "shipping"},
    ]


def test_yaml_keeps_nested_values_and_comments_out(tmp_path: Path) -> None:
    path = tmp_path / "qa.yaml"
    path.write_text(
        "# support questions\n"
        "examples:\n"
        "  - question: How do I reset my password?\n"
        "    answer: Use the link on the login page.\n"
        "    tags: [account, password]\n",
        encoding="utf-8",
    )
    loaded = load_examples(path, inputs=["question"])
    assert loaded.examples[0].tags == ["account", "password"]
    assert loaded.labels == ("answer", "tags")


def test_suffix_is_case_insensitive(tmp_path: Path) -> None:
    loaded = load_examples(write_jsonl(tmp_path / "DATA.JSONL", make_rows(2)), inputs=["ticket"])
    assert len(loaded) == 2


# --- splits -------------------------------------------------------------------------------------


def test_split_column_wins_and_is_not_a_field(tmp_path: Path) -> None:
    rows = [
        {**row, "split": split} for row, split in zip(make_rows(3), ["TEST", " val ", "train"], strict=True)
    ]
    rows.append({**make_rows(1, start=3)[0], "split": ""})  # empty: split by hash
    loaded = load_examples(write_csv(tmp_path / "data.csv", rows), inputs=["ticket"])
    assert loaded.splits[:3] == ["test", "val", "train"]
    assert loaded.test == [loaded.examples[0]]
    assert all("split" not in example for example in loaded)
    assert "split" not in loaded.labels
    hashed = load_examples(write_jsonl(tmp_path / "plain.jsonl", make_rows(1, start=3)), inputs=["ticket"])
    assert loaded.splits[3] == hashed.splits[0]


def test_split_column_changes_the_fingerprint_only_through_the_assignment(tmp_path: Path) -> None:
    rows = make_rows(4)
    plain = load_examples(write_jsonl(tmp_path / "plain.jsonl", rows), inputs=["ticket"])
    pinned_same = [{**row, "split": split} for row, split in zip(rows, plain.splits, strict=True)]
    same = load_examples(write_jsonl(tmp_path / "same.jsonl", pinned_same), inputs=["ticket"])
    assert same.fingerprint == plain.fingerprint
    moved = "val" if plain.splits[0] != "val" else "test"
    pinned_other = [{**rows[0], "split": moved}, *rows[1:]]
    other = load_examples(write_jsonl(tmp_path / "other.jsonl", pinned_other), inputs=["ticket"])
    assert other.fingerprint != plain.fingerprint


def test_adding_rows_never_moves_old_rows(tmp_path: Path) -> None:
    before = load_examples(write_jsonl(tmp_path / "a.jsonl", make_rows(30)), inputs=["ticket"])
    after = load_examples(
        write_jsonl(tmp_path / "b.jsonl", [*make_rows(20, start=30), *make_rows(30)]), inputs=["ticket"]
    )
    old = dict(zip(before.ids, before.splits, strict=True))
    assert {id_: split for id_, split in zip(after.ids, after.splits, strict=True) if id_ in old} == old
    assert before.fingerprint != after.fingerprint


def test_default_ratios_are_roughly_honoured(tmp_path: Path) -> None:
    loaded = load_examples(write_jsonl(tmp_path / "data.jsonl", make_rows(400)), inputs=["ticket"])
    assert loaded.ratios == (0.5, 0.25, 0.25)
    assert 160 < len(loaded.train) < 240
    assert 60 < len(loaded.val) < 140
    assert 60 < len(loaded.test) < 140
    assert len(loaded.train) + len(loaded.val) + len(loaded.test) == 400
    order = {id(example): i for i, example in enumerate(loaded.examples)}
    assert [order[id(example)] for example in loaded.train] == sorted(order[id(e)] for e in loaded.train)


@pytest.mark.parametrize(
    ("split", "expected"),
    [
        ({"train": 1.0, "val": 0.0, "test": 0.0}, {"train"}),
        ((0, 0, 1), {"test"}),
        ({"train": 0.5, "test": 0.5}, {"train", "test"}),  # a missing key has no share
        ([0.0, 1.0, 0.0], {"val"}),
        ((0.7, 0.3 - 1e-9, 0.0), {"train", "val"}),  # rounding never lands a row in a zero share
    ],
)
def test_ratios_decide_the_hash_split(tmp_path: Path, split: Any, expected: set[str]) -> None:
    loaded = load_examples(
        write_jsonl(tmp_path / "data.jsonl", make_rows(60)), inputs=["ticket"], split=split
    )
    assert set(loaded.splits) == expected


def test_ratios_move_rows_monotonically(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "data.jsonl", make_rows(100))
    small = load_examples(path, inputs=["ticket"], split=(0.5, 0.25, 0.25))
    large = load_examples(path, inputs=["ticket"], split=(0.8, 0.1, 0.1))
    small_train = {id_ for id_, s in zip(small.ids, small.splits, strict=True) if s == "train"}
    large_train = {id_ for id_, s in zip(large.ids, large.splits, strict=True) if s == "train"}
    assert small_train < large_train


@pytest.mark.parametrize(
    ("split", "fragment"),
    [
        (
            {"train": 0.5, "val": 0.25, "test": 0.5},
            "must sum to 1, got train 0.5 + val 0.25 + test 0.5 = 1.25",
        ),
        ((0.9, -0.1, 0.2), "ratio for 'val' must be a number >= 0, got -0.1"),
        ({"train": 0.5, "dev": 0.5}, "unknown split name 'dev'"),
        ((0.5, 0.5), "got (0.5, 0.5)"),
        ("train", "got 'train'"),
        ((float("nan"), 0.5, 0.5), "ratio for 'train' must be a number >= 0, got nan"),
        ((True, 0, 0), "ratio for 'train' must be a number >= 0, got True"),
    ],
)
def test_bad_ratios_are_value_errors_naming_the_value(split: Any, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_ratios(split)
    assert fragment in str(info.value)


def test_bad_ratios_fail_before_the_file_is_read(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must sum to 1"):
        load_examples(tmp_path / "missing.jsonl", inputs=["ticket"], split=(1, 1, 1))


def test_ratios_within_tolerance_are_accepted() -> None:
    assert parse_ratios((0.7, 0.2, 0.1)) == (0.7, 0.2, 0.1)  # sums to 0.9999999999999999
    assert parse_ratios(None) == (0.5, 0.25, 0.25)


@pytest.mark.parametrize(
    ("inputs", "fragment"),
    [
        ("ticket", "like inputs=['ticket'], not a string"),
        ([], "inputs= is empty"),
        (["ticket", "ticket"], "names a field twice"),
        (["split"], "names 'split'"),
    ],
)
def test_bad_inputs_are_value_errors(tmp_path: Path, inputs: Any, fragment: str) -> None:
    path = write_jsonl(tmp_path / "data.jsonl", make_rows(2))
    with pytest.raises(ValueError) as info:
        load_examples(path, inputs=inputs)
    assert fragment in str(info.value)


# --- ids and fingerprints -----------------------------------------------------------------------


def test_example_id_is_the_sets_id_or_a_hash_of_the_inputs_of_any_example(tmp_path: Path) -> None:
    import dspy

    loaded = load_examples(write_jsonl(tmp_path / "data.jsonl", make_rows(5)), inputs=["ticket"])
    assert [example_id(example) for example in loaded] == loaded.ids
    assert all(re.fullmatch(r"[0-9a-f]{12}", id_) for id_ in loaded.ids)
    ticket = make_rows(1)[0]["ticket"]
    rebuilt = dspy.Example(category="claims", ticket=ticket).with_inputs("ticket")
    assert example_id(rebuilt) == loaded.ids[0]  # labels and key order do not matter
    assert example_id(dspy.Example(ticket=ticket)) == loaded.ids[0]  # no inputs set: all fields
    assert example_id(rebuilt.with_inputs("category")) != loaded.ids[0]  # the inputs do
    assert example_id(rebuilt.copy(ticket="another ticket")) != loaded.ids[0]


def test_fingerprint_depends_on_inputs_content_and_order(tmp_path: Path) -> None:
    rows = make_rows(6)
    base = load_examples(write_jsonl(tmp_path / "a.jsonl", rows), inputs=["ticket"])
    assert base.fingerprint == load_examples(tmp_path / "a.jsonl", inputs=["ticket"]).fingerprint
    assert re.fullmatch(r"[0-9a-f]{64}", base.fingerprint)
    other_inputs = load_examples(tmp_path / "a.jsonl", inputs=["ticket", "category"])
    assert other_inputs.fingerprint != base.fingerprint
    edited = [{**rows[0], "category": "claims"}, *rows[1:]]
    assert load_examples(write_jsonl(tmp_path / "b.jsonl", edited), inputs=["ticket"]).fingerprint != (
        base.fingerprint
    )
    reordered = list(reversed(rows))
    assert load_examples(write_jsonl(tmp_path / "c.jsonl", reordered), inputs=["ticket"]).fingerprint != (
        base.fingerprint
    )


def test_relabelling_keeps_every_id_and_split_and_changes_the_fingerprint(tmp_path: Path) -> None:
    rows = make_rows(40)
    before = load_examples(write_jsonl(tmp_path / "before.jsonl", rows), inputs=["ticket"])
    relabelled = [{**row, "category": CATEGORIES[(i + 1) % 5]} for i, row in enumerate(rows)]
    after = load_examples(write_jsonl(tmp_path / "after.jsonl", relabelled), inputs=["ticket"])
    assert after.ids == before.ids
    assert after.splits == before.splits
    assert {example_id(example) for example in after.test} == {example_id(example) for example in before.test}
    assert after.fingerprint != before.fingerprint  # the gate still warns "the labeled examples changed"


def test_adding_a_metadata_column_keeps_ids_and_splits(tmp_path: Path) -> None:
    rows = make_rows(20)
    before = load_examples(write_csv(tmp_path / "before.csv", rows), inputs=["ticket"])
    annotated = [{**row, "source": "email" if i % 2 else "chat"} for i, row in enumerate(rows)]
    after = load_examples(write_csv(tmp_path / "after.csv", annotated), inputs=["ticket"])
    assert after.ids == before.ids
    assert after.splits == before.splits
    assert after.labels == ("category", "source")


@pytest.mark.parametrize("writer", [write_jsonl, write_csv, write_yaml])
def test_an_id_column_gives_the_ids_and_is_neither_input_nor_label(tmp_path: Path, writer: Any) -> None:
    rows = [{"id": f"t-{i}", **row} for i, row in enumerate(make_rows(6))]
    suffix = {write_jsonl: ".jsonl", write_csv: ".csv", write_yaml: ".yaml"}[writer]
    loaded = load_examples(writer(tmp_path / f"data{suffix}", rows), inputs=["ticket"])
    assert loaded.ids == [f"t-{i}" for i in range(6)]
    assert [example_id(example) for example in loaded] == loaded.ids
    assert loaded.labels == ("category",)
    first = loaded.examples[0]
    assert first.inputs().toDict() == {"ticket": rows[0]["ticket"]}
    assert first.labels().toDict() == {"category": rows[0]["category"]}
    assert first.toDict() == {"ticket": rows[0]["ticket"], "category": rows[0]["category"]}
    assert list(first) == ["ticket", "category"] and "id" not in first and len(first) == 2
    assert dict(first.items()) == first.toDict()
    # dspy and GEPA copy examples; the id goes along without becoming a field.
    for copied in (first.copy(category="claims"), first.with_inputs("ticket"), first.labels()):
        assert example_id(copied) == "t-0"
    relabelled = [{**row, "category": "claims"} for row in rows]
    again = load_examples(writer(tmp_path / f"again{suffix}", relabelled), inputs=["ticket"])
    assert again.ids == loaded.ids and again.splits == loaded.splits


def test_the_split_follows_the_id_column_not_the_content(tmp_path: Path) -> None:
    rows = [{"id": f"case-{i}", **row} for i, row in enumerate(make_rows(40))]
    loaded = load_examples(write_jsonl(tmp_path / "data.jsonl", rows), inputs=["ticket"])
    reworded = [{**row, "ticket": row["ticket"] + " (reworded)"} for row in rows]
    again = load_examples(write_jsonl(tmp_path / "again.jsonl", reworded), inputs=["ticket"])
    assert again.ids == loaded.ids and again.splits == loaded.splits
    assert set(loaded.splits) == {"train", "val", "test"}


def test_ids_as_numbers_are_text(tmp_path: Path) -> None:
    rows = [{"id": 7, **make_rows(1)[0]}, {"id": " q-8 ", **make_rows(1, start=1)[0]}]
    assert load_examples(write_jsonl(tmp_path / "data.jsonl", rows), inputs=["ticket"]).ids == ["7", "q-8"]


@pytest.mark.parametrize("writer", [write_jsonl, write_csv, write_yaml])
def test_duplicate_ids_name_both_lines(tmp_path: Path, writer: Any) -> None:
    rows = [{"id": f"t-{i}", **row} for i, row in enumerate(make_rows(4))]
    rows[3]["id"] = "t-1"
    suffix = {write_jsonl: ".jsonl", write_csv: ".csv", write_yaml: ".yaml"}[writer]
    path = writer(tmp_path / f"data{suffix}", rows)
    first, second = {".jsonl": (2, 4), ".csv": (3, 5), ".yaml": (4, 10)}[suffix]
    assert load_error(path) == (
        f"{path}:{second}: line {first} and line {second} have the same id 't-1'; give each row its own id"
    )


def test_duplicate_ids_in_json_name_both_elements(tmp_path: Path) -> None:
    rows = [{"id": "a", **make_rows(1)[0]}, {"id": "a", **make_rows(1, start=1)[0]}]
    path = write_json(tmp_path / "data.json", rows)
    assert load_error(path) == (
        f"{path}: examples[0] and examples[1] have the same id 'a'; give each row its own id"
    )


@pytest.mark.parametrize(("writer", "value"), [(write_jsonl, None), (write_jsonl, "  "), (write_csv, "")])
def test_an_empty_id_names_its_line(tmp_path: Path, writer: Any, value: Any) -> None:
    rows = [{"id": "t-0", **make_rows(1)[0]}, {"id": value, **make_rows(1, start=1)[0]}]
    suffix = ".jsonl" if writer is write_jsonl else ".csv"
    path = writer(tmp_path / f"data{suffix}", rows)
    line = 2 if suffix == ".jsonl" else 3
    assert load_error(path) == (
        f"{path}:{line}: row has an empty 'id'; give it a value, or leave the 'id' out of every row "
        "to name each example by a hash of its inputs"
    )


def test_an_id_that_is_not_text_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "data.yaml"
    path.write_text("- id: [1, 2]\n  ticket: a\n  category: x\n", encoding="utf-8")
    assert load_error(path) == f"{path}:1: row has id [1, 2], which is a list; use text or a whole number"


def test_an_id_equal_to_another_rows_hash_id_names_both_lines(tmp_path: Path) -> None:
    plain = make_rows(1)
    hashed = load_examples(write_jsonl(tmp_path / "plain.jsonl", plain), inputs=["ticket"]).ids[0]
    path = write_jsonl(tmp_path / "data.jsonl", [*plain, {"id": hashed, **make_rows(1, start=1)[0]}])
    assert load_error(path) == (
        f"{path}:2: line 1 and line 2 share the id {hashed!r}: one has it in its 'id' column, the other as "
        "the hash of its inputs; give the row with the 'id' column another id"
    )


def test_inputs_cannot_name_the_id_column(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "data.jsonl", [{"id": "a", **make_rows(1)[0]}])
    with pytest.raises(ValueError, match="inputs= names 'id', which is the id column, not a field"):
        load_examples(path, inputs=["id"])


# --- require ------------------------------------------------------------------------------------


def test_require_passes_when_the_splits_have_examples(tmp_path: Path) -> None:
    loaded = load_examples(write_jsonl(tmp_path / "data.jsonl", make_rows(40)), inputs=["ticket"])
    loaded.require("train", "val", purpose="compile")


def test_require_names_the_empty_split_and_the_fix(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "data.jsonl", make_rows(12))
    loaded = load_examples(path, inputs=["ticket"], split=(0.75, 0.0, 0.25))
    with pytest.raises(DataFileError) as info:
        loaded.require("train", "val", purpose="compile")
    assert str(info.value) == (
        f"{path}: the 'val' split is empty (0 of 12 examples) and compile needs it; add rows, or mark "
        "some rows 'val' in a 'split' column (rows without one are split by hash: train 0.75, val 0, "
        "test 0.25)"
    )


def test_require_names_every_empty_split(tmp_path: Path) -> None:
    rows = [{**row, "split": "train"} for row in make_rows(3)]
    loaded = load_examples(write_jsonl(tmp_path / "data.jsonl", rows), inputs=["ticket"])
    with pytest.raises(DataFileError, match=r"the 'val' and 'test' splits are empty \(0 of 3 examples\)"):
        loaded.require("val", "test", purpose="gate")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        loaded.require("dev", purpose="gate")


# --- errors -------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jsonl"
    assert load_error(path) == f"{path}: file not found (looked at {str(path)!r})"


def test_directory(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.mkdir()
    assert load_error(path) == f"{path}: is a directory, not a data file"


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "data.tsv"
    path.write_text("ticket\tcategory\n", encoding="utf-8")
    assert load_error(path) == (
        f"{path}: cannot read file type '.tsv'; use one of .jsonl, .json, .csv, .yaml, .yml"
    )
    assert "a file without a suffix" in load_error(tmp_path / "data")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(b"ticket,category\nCaf\xe9 order,billing\n")
    assert load_error(path) == f"{path}:2: not valid UTF-8 at byte 19; save it as UTF-8"


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.json", "empty.csv", "empty.yaml"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("\n  \n", encoding="utf-8")
    assert load_error(path) == f"{path}: the file is empty; add at least one example"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("header.csv", "ticket,category\n"),
        ("list.json", "[]"),
        ("wrapped.json", '{"examples": []}'),
        ("comments.yaml", "# nothing yet\n"),
        ("wrapped.yml", "examples: []\n"),
    ],
)
def test_file_without_examples(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert load_error(path) == f"{path}: the file holds no examples; add at least one row"


def test_jsonl_invalid_json_names_the_line_and_the_decoder_message(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"ticket": "a", "category": "x"}\n{"ticket": "b", "category": }\n', encoding="utf-8")
    assert load_error(path) == f"{path}:2: invalid JSON: Expecting value (column 29)"


def test_jsonl_row_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"ticket": "a", "category": "x"}\n["b", "y"]\n', encoding="utf-8")
    assert load_error(path) == f"{path}:2: row is a list, not a JSON object"


def test_jsonl_repeated_key_in_a_row(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"ticket": "a", "category": "x", "category": "y"}\n', encoding="utf-8")
    assert load_error(path) == f"{path}:1: the key 'category' appears twice in one object; keep one"


def test_json_invalid_json_names_the_decoder_line(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text('[\n  {"ticket": "a", "category": "x"},\n  {"ticket": "b",, }\n]\n', encoding="utf-8")
    assert (
        load_error(path)
        == f"{path}:3: invalid JSON: Expecting property name enclosed in double quotes (column 18)"
    )


def test_json_bad_element_names_its_index(tmp_path: Path) -> None:
    path = write_json(tmp_path / "data.json", [*make_rows(3), "oops"], wrapped=True)  # type: ignore[list-item]
    assert load_error(path) == f"{path}: examples[3] is a string, not a JSON object"


def test_json_missing_input_names_the_element(tmp_path: Path) -> None:
    path = write_json(tmp_path / "data.json", [*make_rows(2), {"text": "hi", "category": "x"}])
    assert (
        load_error(path)
        == f"{path}: examples[2] is missing input field 'ticket' (fields: 'text', 'category')"
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            '{"rows": []}',
            "expected a list of examples, or an object with an 'examples' list; "
            "found an object with keys 'rows'",
        ),
        ('"hello"', "expected a list of examples, or an object with an 'examples' list; found a string"),
        ('{"examples": {"a": 1}}', "'examples' must be a list, found a dict"),
    ],
)
def test_json_wrong_document_shape(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "data.json"
    path.write_text(text, encoding="utf-8")
    assert load_error(path) == f"{path}: {fragment}"


def test_csv_ragged_row(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("ticket,category\nRefund me,billing\nLost,shipping,urgent\n", encoding="utf-8")
    assert load_error(path) == f"{path}:3: row has 3 cells but the header has 2 columns"


def test_csv_bad_header(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("\nticket,category,ticket\na,b,c\n", encoding="utf-8")
    assert load_error(path) == f"{path}:2: header names column 'ticket' twice"
    path.write_text("ticket,,category\na,b,c\n", encoding="utf-8")
    assert load_error(path) == f"{path}:1: header column 2 has no name"


def test_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "data.yaml"
    path.write_text("- ticket: a\n  category: x\n- ticket: b\n  category: [unclosed\n", encoding="utf-8")
    message = load_error(path)
    assert re.fullmatch(rf"{re.escape(str(path))}:5: invalid YAML: .+", message), message


def test_yaml_two_documents(tmp_path: Path) -> None:
    path = tmp_path / "data.yaml"
    path.write_text("- ticket: a\n  category: x\n---\n- ticket: b\n  category: y\n", encoding="utf-8")
    message = load_error(path)
    assert message.startswith(f"{path}:3: invalid YAML: ")
    assert "single document" in message


def test_yaml_row_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "data.yaml"
    path.write_text("examples:\n  - ticket: a\n    category: x\n  - just text\n", encoding="utf-8")
    assert load_error(path) == f"{path}:4: row is a string, not a mapping of field: value"


def test_yaml_missing_input_and_empty_input_name_the_row_line(tmp_path: Path) -> None:
    path = tmp_path / "data.yaml"
    path.write_text(
        "- ticket: a\n  category: x\n\n# a comment\n- category: y\n  text: hi\n", encoding="utf-8"
    )
    assert load_error(path) == f"{path}:5: row is missing input field 'ticket' (fields: 'category', 'text')"
    path.write_text("- ticket: a\n  category: x\n- ticket:\n  category: y\n", encoding="utf-8")
    assert load_error(path) == f"{path}:3: row has an empty value for input field 'ticket'"


def test_yaml_repeated_key_and_non_text_key(tmp_path: Path) -> None:
    path = tmp_path / "data.yaml"
    path.write_text("- ticket: a\n  category: x\n  category: y\n", encoding="utf-8")
    assert load_error(path) == f"{path}:3: the key 'category' appears twice in one row; keep one"
    path.write_text("- ticket: a\n  1: x\n", encoding="utf-8")
    assert load_error(path) == f"{path}:1: row has field name 1, which is not text; quote it"


def test_reserved_dspy_field(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "data.jsonl", [{"ticket": "a", "dspy_uuid": "x"}])
    assert (
        load_error(path)
        == f"{path}:1: row has field 'dspy_uuid'; DSPy reserves the 'dspy_' prefix, rename it"
    )


def test_bad_split_value_names_the_line(tmp_path: Path) -> None:
    rows = [{**row, "split": "train"} for row in make_rows(2)]
    rows[1]["split"] = "dev"
    path = write_csv(tmp_path / "data.csv", rows)
    assert load_error(path) == (
        f"{path}:3: row has split 'dev'; use 'train', 'val' or 'test', or leave it empty to split by hash"
    )


@pytest.mark.parametrize("writer", [write_jsonl, write_csv, write_yaml])
def test_duplicates_name_both_lines(tmp_path: Path, writer: Any) -> None:
    rows = make_rows(4)
    rows.append({**rows[1], "split": "test"})  # the split column is not part of the content
    rows[0]["split"] = "train"
    suffix = {write_jsonl: ".jsonl", write_csv: ".csv", write_yaml: ".yaml"}[writer]
    path = writer(tmp_path / f"data{suffix}", rows)
    first, second = {".jsonl": (2, 5), ".csv": (3, 6), ".yaml": (4, 10)}[suffix]
    assert (
        load_error(path)
        == f"{path}:{second}: line {first} and line {second} hold the same example; remove one of them"
    )


def test_duplicates_in_json_name_both_elements(tmp_path: Path) -> None:
    rows = make_rows(4)
    path = write_json(tmp_path / "data.json", [*rows, rows[2]])
    assert (
        load_error(path) == f"{path}: examples[2] and examples[4] hold the same example; remove one of them"
    )


def test_same_inputs_with_different_labels_name_both_lines(tmp_path: Path) -> None:
    rows = [{"ticket": "Refund me", "category": "billing"}, {"ticket": "Refund me", "category": "account"}]
    path = write_jsonl(tmp_path / "data.jsonl", rows)
    assert load_error(path) == (
        f"{path}:2: line 1 and line 2 have the same inputs, so both would get the id "
        f"{load_examples(write_jsonl(tmp_path / 'one.jsonl', rows[:1]), inputs=['ticket']).ids[0]!r}; "
        "keep one of them, or give each row its own 'id'"
    )
    with_ids = [{"id": "r-1", **rows[0]}, {"id": "r-2", **rows[1]}]
    loaded = load_examples(write_jsonl(tmp_path / "ids.jsonl", with_ids), inputs=["ticket"])
    assert loaded.ids == ["r-1", "r-2"]


# --- import cost --------------------------------------------------------------------------------


def test_importing_the_module_does_not_import_dspy() -> None:
    code = "import sys, pytest_gepa.data; print('dspy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_example_set_is_frozen(tmp_path: Path) -> None:
    loaded = load_examples(write_jsonl(tmp_path / "data.jsonl", make_rows(2)), inputs=["ticket"])
    assert isinstance(loaded, ExampleSet)
    with pytest.raises(AttributeError):
        loaded.fingerprint = "x"  # type: ignore[misc]


def test_fields_named_like_example_parameters_are_kept(tmp_path: Path) -> None:
    rows = [{"self": "me", "base": "a base question", "answer": "x"}]
    loaded = load_examples(write_jsonl(tmp_path / "data.jsonl", rows), inputs=["base", "self"])
    assert loaded.examples[0].toDict() == rows[0]
    assert loaded.examples[0].inputs().toDict() == {"self": "me", "base": "a base question"}
