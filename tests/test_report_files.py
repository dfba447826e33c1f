"""``--gepa-report``: the JSON, Markdown and HTML report files, from hand-built target rows."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pytest_gepa import _io
from pytest_gepa.report import files as report_files
from pytest_gepa.report.files import render_html, render_json, render_markdown, write_report
from pytest_gepa.report.model import TargetReport

META = {"mode": "compile", "created": "2025-01-02T03:04:05+00:00", "pytest_gepa": "0.1.0", "dspy": "3.4.0",
        "exitstatus": 1}

FAILED_MESSAGE = (
    "mean score 0.550 (95% CI 0.30-0.80) is below min_score 0.80\n"
    "2 example(s) scored lower than when compiled:\n"
    "  - t-3: 1.00 -> 0.00: expected billing, got <script>alert(1)</script>\n"
    "  - t-7: 1.00 -> 0.50: partial | missing the order number"
)
PREVIOUS = "Classify the ticket.\nAnswer with one word."
CANDIDATE = "Classify the support ticket.\nAnswer with one word.\nRefund questions are billing."
BASELINE = "Classify the ticket."
FIRST = "Classify the support ticket into one category.\nRefunds are billing."
CHARGED_TWICE = "I was charged twice for order 4411, please refund one of the payments"
# Longer than a cell shows: the HTML cuts it and keeps the whole text one click away.
LONG_FEEDBACK = ("partial | missing the order number; " + "the customer quoted it in the second paragraph, " * 4
                 + "so the answer should have named it: END-OF-FEEDBACK")


def passed_gate() -> TargetReport:
    return TargetReport(
        nodeid="tests/test_qa.py::test_answer", name="test_answer", mode="gate",
        artifact="tests/gepa_artifacts/test_qa/test_answer.json", status="passed", score=0.92, ci=(0.85, 0.97),
        min_score=0.8, max_drop=0.03, recorded=0.9, lm_calls={"task": 20, "reflection": 0, "judge": 0},
        tokens={"task": 4000, "reflection": 0, "judge": 0}, cost_usd=0.0012,
        per_example=[{"id": "q-1", "score": 1.0, "feedback": "exact", "error": None},
                     {"id": "q-2", "score": 0.84, "feedback": "close enough", "error": None}],
        instructions={"predict": "Answer the question briefly."},
    )


def failed_gate() -> TargetReport:
    return TargetReport(
        nodeid="tests/test_triage.py::test_triage[a|b]", name="test_triage[a|b]", mode="gate",
        artifact="tests/gepa_artifacts/test_triage/test_triage.json", status="failed", score=0.55,
        ci=(0.3, 0.8), min_score=0.8, max_drop=0.03, recorded=0.95,
        lm_calls={"task": 10, "reflection": 0, "judge": 10}, tokens={"task": 2000, "reflection": 0, "judge": 900},
        cost_usd=0.002, message=FAILED_MESSAGE,
        per_example=[  # in devset order; reports put regressions first, then errors
            {"id": "t-1", "score": 1.0, "recorded": 1.0, "feedback": "exact", "error": None,
             "inputs": {"ticket": "Where is my parcel?"}, "output": {"category": "shipping"}},
            {"id": "t-7", "score": 0.5, "recorded": 1.0, "feedback": LONG_FEEDBACK, "error": None,
             "inputs": {"ticket": "My claim | the order number is 991"}, "output": {"category": "claims"}},
            {"id": "t-9", "score": None, "recorded": 1.0, "feedback": "", "error": "TimeoutError: the task LM did not answer",
             "inputs": {"ticket": "Reset my password"}},
            {"id": "t-3", "score": 0.0, "recorded": 1.0, "feedback": "expected billing, got <script>alert(1)</script>",
             "error": None, "inputs": {"ticket": CHARGED_TWICE}, "output": {"category": "<script>alert(1)</script>"}},
            {"id": "t-5", "score": 1.0, "recorded": 0.0, "feedback": "exact", "error": None,
             "inputs": {"ticket": "The app crashes on start"}, "output": {"category": "technical"}},
        ],
        instructions={"predict": PREVIOUS},
    )


def compiled() -> TargetReport:
    return TargetReport(
        nodeid="tests/test_triage.py::test_route", name="router", mode="compile",
        artifact="tests/gepa_artifacts/test_triage/router.json", status="compiled", score=0.9, ci=(0.8, 1.0),
        min_score=0.85, max_drop=0.0, recorded=0.85, baseline=0.4,
        lm_calls={"task": 300, "reflection": 12, "judge": 0}, tokens={"task": 90000, "reflection": 20000, "judge": 0},
        cost_usd=0.05, stop_reason="budget exhausted", metric_calls=240,
        per_example=[{"id": "r-1", "score": 1.0, "feedback": "routed", "error": None}],
        instructions={"predict": CANDIDATE, "extract": "Extract the order id."},
        previous_instructions={"predict": PREVIOUS, "extract": "Extract the order id."},
        baseline_instructions={"predict": BASELINE, "extract": "Extract the order id."},
        trajectory=[(20, 0.4), (60, 0.55), (140, 0.7), (220, 0.85)],
    )


def first_compile() -> TargetReport:
    return TargetReport(
        nodeid="tests/test_new.py::test_new", name="test_new", mode="compile",
        artifact="tests/gepa_artifacts/test_new/test_new.json", status="compiled", score=0.8, ci=(0.7, 0.9),
        baseline=0.5, lm_calls={"task": 100, "reflection": 5, "judge": 0},
        tokens={"task": 30000, "reflection": 7000, "judge": 0}, cost_usd=None, stop_reason="score reached",
        metric_calls=80, per_example=[{"id": "n-1", "score": 0.8, "feedback": "ok", "error": None}],
        instructions={"predict": FIRST}, baseline_instructions={"predict": BASELINE},
        trajectory=[(10, 0.5), (80, 0.8)],
    )


@pytest.fixture
def reports() -> list[TargetReport]:
    return [passed_gate(), failed_gate(), compiled(), first_compile()]


# -- JSON ------------------------------------------------------------------------------------


def test_json_has_the_documented_fields_and_each_target_round_trips(reports: list[TargetReport]) -> None:
    text = render_json(reports, meta=META)
    document = json.loads(text)
    assert list(document) == ["meta", "schema", "targets", "totals"]
    assert document["schema"] == "pytest-gepa-report/1"
    assert document["meta"] == META
    assert [TargetReport.from_dict(target) for target in document["targets"]] == reports
    assert document["targets"][2]["delta"] == pytest.approx(0.05)
    assert document["totals"] == {
        "targets": 4, "passed": 3, "failed": 1,
        "by_status": {"passed": 1, "failed": 1, "compiled": 2},
        "lm_calls": {"task": 430, "reflection": 17, "judge": 10},
        "tokens": {"task": 126000, "reflection": 27000, "judge": 900},
        "cost_usd": None,  # the first compile's model has no known price
    }
    assert text == json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def test_json_total_cost_is_the_sum_when_every_price_is_known(reports: list[TargetReport]) -> None:
    unpriced_but_idle = TargetReport(nodeid="tests/test_x.py::test_x", name="test_x", mode="gate", artifact="a",
                                     status="missing")
    document = json.loads(render_json([*reports[:3], unpriced_but_idle], meta=META))
    assert document["totals"]["cost_usd"] == pytest.approx(0.0012 + 0.002 + 0.05)
    assert document["totals"]["failed"] == 2


def test_json_writes_a_score_that_is_not_a_number_as_null() -> None:
    report = passed_gate()
    report.score = math.nan
    document = json.loads(render_json([report], meta=META))
    assert document["targets"][0]["score"] is None


def test_every_json_field_is_in_the_module_docstring(reports: list[TargetReport]) -> None:
    document = json.loads(render_json(reports, meta=META))
    doc = report_files.__doc__ or ""
    reference = doc[doc.index("JSON fields"):doc.index("Each element of ``targets``")]
    documented = set(re.findall(r"^ {4,6}(\w+) ", reference, re.MULTILINE))
    emitted = set(document) | set(document["meta"]) | set(document["totals"]) | set(document["targets"][0])
    assert emitted - documented == set(), "fields written but not documented"
    assert documented - emitted == {"merged_from"}, "fields documented but not written (merged_from: by a merge)"
    assert set(document["targets"][1]["per_example"][0]) == {"id", "score", "recorded", "feedback", "error",
                                                             "inputs", "output"}


# -- Markdown --------------------------------------------------------------------------------


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]]


def test_markdown_puts_regressions_first_then_a_table_with_a_row_per_target(reports: list[TargetReport]) -> None:
    text = render_markdown(reports, meta=META)
    lines = text.splitlines()
    header = "| target | mode | score (95% CI) | threshold | recorded | delta | LM calls | cost | status |"
    start = lines.index(header)
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(_cells(line))
    assert len(rows) == len(reports)
    assert all(len(row) == 9 for row in rows), "an unescaped | split a cell"
    assert rows[0] == ["`tests/test_qa.py::test_answer`", "gate", "0.920 (0.85-0.97)", ">=0.80 drop<=0.03",
                       "0.900", "+0.020", "20/0/0", "$0.0012", "passed"]
    assert rows[1][0] == "`tests/test_triage.py::test_triage[a\\|b]`"
    assert rows[1][-1] == "**failed**"
    assert rows[2][0] == "`tests/test_triage.py::test_route [router]`"
    assert rows[3][7] == "-"

    assert text.index("### Regressions") < text.index("### Targets") < text.index("### Next steps")
    regressions = text[text.index("### Regressions"):text.index("### Targets")]
    assert ("**`tests/test_triage.py::test_triage[a|b]`** failed: mean score 0.550 (95% CI 0.30-0.80) is below "
            "min\\_score 0.80\n") in regressions  # outside a table, | stays; the reason on one line
    folded = regressions[regressions.index("<details>"):regressions.index("</details>")]
    assert FAILED_MESSAGE in folded, "the whole message is folded"
    assert "test_answer" not in regressions and "test_route" not in regressions
    steps = text[text.index("### Next steps"):]
    assert "`pytest --gepa-compile 'tests/test_triage.py::test_triage[a|b]'`" in steps  # quoted: | is a pipe
    assert "\\*gepa\\_artifacts\\*" in steps  # literal, not emphasis


def test_markdown_without_regressions_has_no_regressions_section() -> None:
    text = render_markdown([passed_gate()], meta=META)
    assert "Regressions" not in text
    assert "- All gates passed." in text


# -- HTML ------------------------------------------------------------------------------------


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text inside each element kind that matters here."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.open: list[str] = []
        self.text: dict[str, list[str]] = {"del": [], "ins": [], "td": [], "h2": []}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in ("meta", "br", "line", "path", "circle"):
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.open:
            while self.open.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        for tag in self.text:
            if tag in self.open:
                self.text[tag].append(data)

    def count(self, tag: str, cls: str | None = None) -> int:
        return sum(1 for name, attrs in self.tags if name == tag and (cls is None or cls in (attrs.get("class") or "")))


def parse(text: str) -> Tags:
    tags = Tags()
    tags.feed(text)
    tags.close()
    return tags


def test_html_shows_the_plot_the_diff_and_the_examples(reports: list[TargetReport]) -> None:
    text = render_html(reports, meta=META)
    page = parse(text)
    assert page.count("section", "target") == 4
    assert page.count("svg") == 2
    assert page.count("circle", "point") == len(compiled().trajectory) + len(first_compile().trajectory)
    assert "metric calls" in text and "best validation score" in text
    assert text.count("No score trajectory") == 2  # the two gate targets

    assert page.text["del"] == ["Classify the ticket.", "Classify the ticket."]
    assert page.text["ins"] == ["Classify the support ticket.", "Refund questions are billing.",
                                "Classify the support ticket into one category.", "Refunds are billing."]
    assert "Changes from the committed artifact" in text
    assert "No committed artifact to compare with: changes from the unoptimized program" in text
    assert "extract (unchanged)" in text

    cells = "".join(page.text["td"])
    for example_id in ("q-1", "q-2", "t-3", "t-7", "t-9", "r-1", "n-1"):
        assert example_id in cells
    assert "TimeoutError: the task LM did not answer" in cells
    assert page.count("tr", "error") == 1


def test_html_escapes_what_users_wrote(reports: list[TargetReport]) -> None:
    text = render_html(reports, meta=META)
    assert page_has_no_script(text)
    assert "expected billing, got &lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script>" not in text
    assert "test_triage[a|b]" in "".join(parse(text).text["h2"])


def page_has_no_script(text: str) -> bool:
    return parse(text).count("script") == 0


def test_html_is_self_contained() -> None:
    text = render_html([compiled()], meta=META)
    page = parse(text)
    assert page.count("link") == page.count("img") == page.count("script") == 0
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in text


# -- writing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("suffix", "render"), [(".json", render_json), (".md", render_markdown),
                                                (".HTML", render_html)])
def test_write_report_picks_the_format_by_suffix(tmp_path: Path, reports: list[TargetReport], suffix: str,
                                                 render: object) -> None:
    path = tmp_path / "reports" / f"gepa{suffix}"
    write_report(path, reports, meta=META)
    assert path.read_text(encoding="utf-8") == render(reports, meta=META)  # type: ignore[operator]
    assert os.listdir(path.parent) == [path.name]


def test_write_report_replaces_the_file_whole_or_not_at_all(tmp_path: Path, reports: list[TargetReport],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "gepa.json"
    path.write_text("previous run")

    def fail(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    problem = write_report(path, reports, meta=META)
    assert problem == (f"--gepa-report: could not write {str(path)!r} (OSError: disk full); the summary above is "
                       "complete; pass a path in a writable folder to keep the report.")
    assert path.read_text() == "previous run"
    assert os.listdir(tmp_path) == ["gepa.json"]

    monkeypatch.undo()
    assert write_report(path, reports, meta=META) is None
    assert json.loads(path.read_text())["schema"] == "pytest-gepa-report/1"


# -- in a real browser -----------------------------------------------------------------------

CHROMIUM_TIMEOUT_S = 60
# Chromium logs every console message of the page (console.*, uncaught exceptions, blocked loads)
# to stderr as "...:INFO:CONSOLE:12] "text", source: ..." (older builds: "CONSOLE(12)").
CONSOLE_LINE = re.compile(r":CONSOLE[(:]\d+")


def open_in_chromium(page: Path, workdir: Path) -> tuple[str, list[str], bytes]:
    """Load ``page`` headless: its DOM after load, the console lines it logged, and a screenshot."""
    chromium = shutil.which("chromium")
    assert chromium is not None
    screenshot = workdir / f"{page.stem}.png"
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # the page is a local file; nothing may resolve a host
        f"--user-data-dir={workdir / 'profile'}", "--enable-logging=stderr", "--v=0", "--hide-scrollbars",
        "--window-size=1200,1800", f"--screenshot={screenshot}", "--dump-dom", page.as_uri(),
    ]
    # Its own process group, so a hung browser is ended with every helper process it started.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        dom, log = process.communicate(timeout=CHROMIUM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"chromium did not finish loading {page} within {CHROMIUM_TIMEOUT_S}s")
    assert process.returncode == 0, f"chromium exited with {process.returncode}:\n{log}"
    console = [line for line in log.splitlines() if CONSOLE_LINE.search(line)]
    return dom, console, screenshot.read_bytes() if screenshot.exists() else b""


@pytest.fixture
def browser() -> None:
    if shutil.which("chromium") is None:
        pytest.skip("no chromium binary on PATH: install it (apt-get install -y chromium) to run the browser check")


def png_size_and_colours(data: bytes) -> tuple[int, int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    idat, offset = b"", 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if kind == b"IDAT":
            idat += data[offset + 8:offset + 8 + length]
        offset += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


@pytest.mark.usefixtures("browser")
def test_html_report_renders_in_chromium_without_console_errors(tmp_path: Path, reports: list[TargetReport]) -> None:
    page = tmp_path / "gepa.html"
    write_report(page, reports, meta=META)
    dom, console, screenshot = open_in_chromium(page, tmp_path)
    assert console == []
    assert dom.count('<svg class="trajectory"') == 2
    assert dom.count('class="point"') == 6
    assert '<del class="line removed">Classify the ticket.</del>' in dom
    assert '<ins class="line added">Refund questions are billing.</ins>' in dom
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    width, height, colours = png_size_and_colours(screenshot)
    assert (width, height) == (1200, 1800)
    assert colours > 20, "the screenshot is (nearly) blank"


@pytest.mark.usefixtures("browser")
def test_the_console_check_catches_errors_and_blocked_content(tmp_path: Path) -> None:
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><p>x</p><script>console.error('deliberate error'); undefinedName();</script>")
    _, console, _ = open_in_chromium(broken, tmp_path)
    assert any("deliberate error" in line for line in console), console
    assert any("Uncaught ReferenceError: undefinedName is not defined" in line for line in console), console

    # The report's content policy stops anything injected from running or loading, and says so.
    page = tmp_path / "injected.html"
    text = render_html([compiled()], meta=META).replace(
        "</body>", "<script>console.error('ran')</script><img src='http://127.0.0.1:9/x.png'></body>")
    page.write_text(text)
    dom, console, _ = open_in_chromium(page, tmp_path)
    assert not any("ran" in line.split('"')[1] for line in console if '"' in line), console
    assert any("Executing inline script violates" in line for line in console), console
    assert any("Loading the image 'http://127.0.0.1:9/x.png' violates" in line for line in console), console
    assert '<svg class="trajectory"' in dom


def test_html_labels_predictors_that_appear_or_disappear_and_the_run_end() -> None:
    report = compiled()
    report.instructions = {"predict": CANDIDATE, "summarize": "Summarize the ticket."}
    text = render_html([report], meta=META)
    assert "<h4>summarize (new predictor)</h4>" in text
    assert "<h4>extract (predictor removed)</h4>" in text
    assert '<del class="line removed">Extract the order id.</del>' in text
    # The best score holds until the run ended at 240 metric calls: the step reaches the right edge.
    assert re.search(r'<path class="step" d="[^"]* H616\.0"/>', text)


# -- the statistical verdict and the examples, in every format ------------------------------------


def inconclusive_gate() -> TargetReport:
    """A gate whose paired drop is over max_drop but not significant, two examples lost, three samples each;
    the lead's gate flow fills its trajectory and instructions from the artifact."""
    return TargetReport(
        nodeid="tests/test_qa.py::test_close", name="test_close", mode="gate",
        artifact="tests/gepa_artifacts/test_qa/test_close.json", status="inconclusive", score=0.78,
        ci=(0.66, 0.88), min_score=0.7, max_drop=0.02, recorded=0.81, samples=3, drop=0.03, drop_ci=(-0.01, 0.07),
        resolution=0.05, scored=58, total=60, model="openai/gpt-4o-mini", replayed=174,
        lm_errors=[{"id": "c-58", "error": "TimeoutError: no answer in 30s"},
                   {"id": "c-59", "error": "RateLimitError: 429 slow down"}],
        warnings=["max_drop 0.02 is finer than this devset's resolution 0.05 at 95%: add examples"],
        per_example=[{"id": "c-1", "score": 0.67, "recorded": 1.0, "feedback": "2 of 3 samples right",
                      "inputs": {"question": "How do I reset my password?"},
                      "output": {"answer": "Use the reset link | on the login page"}}],
        instructions={"predict": "Answer the support question.\nName the page to use."},
        trajectory=[(10, 0.5), (40, 0.81)],
    )


def facts(text: str) -> dict[str, str]:
    return dict(re.findall(r"<dt>([^<]*)</dt><dd>(.*?)</dd>", text))


def test_json_carries_the_verdict_and_it_counts_as_passed() -> None:
    report = inconclusive_gate()
    document = json.loads(render_json([report, failed_gate()], meta=META))
    target = document["targets"][0]
    assert (target["status"], target["drop"], target["drop_ci"], target["resolution"]) == (
        "inconclusive", 0.03, [-0.01, 0.07], 0.05)
    assert (target["samples"], target["scored"], target["total"], target["replayed"]) == (3, 58, 60, 174)
    assert TargetReport.from_dict(target) == report
    assert document["totals"]["passed"] == 1 and document["totals"]["failed"] == 1


def test_markdown_gives_each_target_its_verdict_in_words() -> None:
    text = render_markdown([inconclusive_gate(), passed_gate()], meta=META)
    verdicts = text[text.index("### Verdicts"):]
    assert ("- `tests/test_qa.py::test_close`: status inconclusive; model openai/gpt-4o-mini; score 0.780 "
            "(95% CI 0.660 to 0.880); scored 58 of 60; samples 3 per example; paired drop +0.030 (95% CI -0.010 "
            "to +0.070); resolution 0.050 (smallest drop this devset can detect); replayed 174 LM calls from the "
            "cassette") in verdicts
    assert "  - max\\_drop 0.02 is finer than this devset's resolution 0.05 at 95%: add examples" in verdicts
    assert "  - not scored: `c-59` RateLimitError: 429 slow down" in verdicts
    row = next(line for line in text.splitlines() if line.startswith("| `tests/test_qa.py::test_close`"))
    assert _cells(row)[2:4] == ["0.780 (0.66-0.88), scored 58 of 60", ">=0.70 drop +0.030 \\[-0.010, +0.070\\] <=0.02"]
    assert _cells(row)[6] == "replayed 174"
    assert _cells(row)[-1] == "inconclusive"  # it passed: not bold
    assert "- Inconclusive: tests/test\\_qa.py::test\\_close missed a threshold" in text


def test_markdown_job_summary_shows_the_regressed_examples() -> None:
    text = render_markdown([failed_gate(), passed_gate()], meta=META)
    section = text[text.index("### Regressions"):text.index("### Targets")]
    lines = section.splitlines()
    assert "2 example(s) scored below their recording:" in lines
    head = lines.index("| id | recorded → now | inputs | output | feedback |")
    rows = [_cells(line) for line in lines[head + 2:] if line.startswith("|")]
    assert [row[0] for row in rows] == ["`t-3`", "`t-7`"], "largest fall first; errors and improvements left out"
    assert rows[0][1:] == ["1.00 → 0.00", f"ticket: {CHARGED_TWICE}", "category: \\<script>alert(1)\\</script>",
                           "expected billing, got \\<script>alert(1)\\</script>"]
    assert rows[1][2] == "ticket: My claim \\| the order number is 991"
    assert rows[1][4].endswith("...") and len(rows[1][4]) < 100, "long feedback is cut in a job summary"
    assert all(len(row) == 5 for row in rows), "an unescaped | split a cell"
    assert "test_answer" not in section


def test_html_shows_the_verdict_facts() -> None:
    text = render_html([inconclusive_gate()], meta=META)
    shown = facts(text)
    assert shown["status"] == "inconclusive"
    assert shown["scored"] == "58 of 60"
    assert shown["samples"] == "3 per example"
    assert shown["paired drop"] == "+0.030 (95% CI -0.010 to +0.070)"
    assert shown["resolution"] == "0.050 (smallest drop this devset can detect)"
    assert shown["replayed"] == "174 LM calls from the cassette"
    assert '<span class="status inconclusive">inconclusive</span>' in text
    assert "<li>max_drop 0.02 is finer than this devset&#39;s resolution 0.05 at 95%: add examples</li>" in text
    lost = text[text.index("<h3>Not scored</h3>"):text.index("<h3>Instructions</h3>")]
    assert "<code>c-58</code>" in lost and "RateLimitError: 429 slow down" in lost


def test_html_a_gate_shows_the_artifacts_trajectory_and_instruction_as_compiled() -> None:
    text = render_html([inconclusive_gate()], meta=META)
    page = parse(text)
    assert page.count("svg") == 1 and page.count("circle", "point") == 2
    assert "The artifact&#39;s compile run" in text
    assert "instruction as compiled into the artifact" in text
    assert ('<div class="diff"><span class="line same">Answer the support question.</span>'
            '<span class="line same">Name the page to use.</span></div>') in text


class ExampleRows(HTMLParser):
    """The rows of the examples table: each row's class and its cells' text."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, list[str]]] = []
        self.inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.inside = dict(attrs).get("class") == "examples"
        elif self.inside and tag == "tr" and dict(attrs).get("class"):
            self.rows.append((dict(attrs)["class"] or "", []))
        elif self.inside and tag == "td" and self.rows:
            self.rows[-1][1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.inside = False

    def handle_data(self, data: str) -> None:
        if self.inside and self.rows and self.rows[-1][1]:
            self.rows[-1][1][-1] += data


def test_html_examples_show_inputs_output_and_feedback_regressions_first() -> None:
    text = render_html([failed_gate()], meta=META)
    table = ExampleRows()
    table.feed(text)
    assert [(kind, cells[0]) for kind, cells in table.rows] == [
        ("regressed", "t-3"), ("regressed", "t-7"), ("error", "t-9"), ("ok", "t-1"), ("ok", "t-5")]
    header = re.search(r'<table class="examples"><thead><tr>(.*?)</tr>', text)
    assert header is not None
    assert re.findall(r"<th>([^<]*)</th>", header.group(1)) == [
        "id", "score", "recorded", "inputs", "output", "feedback", "error"]
    first = table.rows[0][1]
    assert first[1].startswith("0.000") and first[2] == "1.000"
    assert first[3] == f"ticket{CHARGED_TWICE}"  # the field name, then its value
    assert first[4] == "category<script>alert(1)</script>"  # as text: escaped in the page
    assert "2 regressed, 1 with errors" in text


def test_html_cuts_long_text_and_keeps_it_whole_on_expand() -> None:
    text = render_html([failed_gate()], meta=META)
    cut = re.search(r'<details class="cell"><summary>([^<]*)</summary><div class="full">([^<]*)</div></details>', text)
    assert cut is not None, "the long feedback is not behind <details>"
    summary, full = cut.groups()
    assert summary.endswith("...") and len(summary) <= 160
    assert full == LONG_FEEDBACK.replace("&", "&amp;") and full.endswith("END-OF-FEEDBACK")
    assert text.count('<details class="cell">') == 1, "short text is shown whole, not behind a click"


def test_html_shows_a_recorded_score_of_zero() -> None:
    report = passed_gate()
    report.per_example = [{"id": "z", "score": 1.0, "recorded": 0.0}]
    text = render_html([report], meta=META)
    assert "<th>recorded</th>" in text and '<td class="num">0.000</td>' in text


def test_html_tolerates_rows_with_only_an_id() -> None:
    report = passed_gate()
    report.per_example = [{"id": "bare"}, {"score": 0.5}, {"id": "x", "inputs": "plain text", "output": ["a", 1]}]
    text = render_html([report], meta=META)
    table = ExampleRows()
    table.feed(text)
    assert [cells[0] for _, cells in table.rows] == ["bare", "", "x"]
    assert table.rows[2][1][2] == "plain text" and table.rows[2][1][3] == '["a", 1]'


# -- a report that cannot be written ---------------------------------------------------------------


def test_write_report_into_a_file_not_a_folder_says_so_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("a file where a folder should be")
    path = tmp_path / "out" / "gepa.html"
    problem = write_report(path, [passed_gate()], meta=META)
    assert problem is not None and "\n" not in problem
    assert problem.startswith(f"--gepa-report: could not write {str(path)!r} (FileExistsError: ")
    assert problem.endswith("pass a path in a writable folder to keep the report.")


def test_write_report_under_a_held_lock_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def held(path: Path, text: str) -> None:
        raise _io.LockTimeout(f"{path}: another process has held its lock for 60s")

    monkeypatch.setattr(_io, "atomic_write", held)
    problem = write_report(tmp_path / "gepa.md", [passed_gate()], meta=META)
    assert problem is not None and "LockTimeout" in problem and "held its lock" in problem


def test_the_template_ships_as_package_data() -> None:
    import tomllib

    from pytest_gepa.report import page as report_page

    package = Path(report_page.__file__).parent
    shipped = tomllib.loads((package.parents[1] / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = shipped["package-data"]["pytest_gepa.report"]
    templates = sorted(path.relative_to(package) for path in (package / "templates").iterdir())
    assert templates, "no templates found"
    assert all(any(path.match(pattern) for pattern in patterns) for path in templates), (templates, patterns)
    assert "jinja2>=3.1,<4" in tomllib.loads((package.parents[1] / "pyproject.toml").read_text())["project"][
        "dependencies"]


# -- a screenshot ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("browser")
def test_html_screenshot_is_not_blank_and_the_dom_holds_the_examples(tmp_path: Path) -> None:
    page = tmp_path / "examples.html"
    assert write_report(page, [failed_gate(), inconclusive_gate()], meta=META) is None
    dom, console, screenshot = open_in_chromium(page, tmp_path)
    assert console == []
    assert (tmp_path / "examples.png").is_file()
    width, height, colours = png_size_and_colours(screenshot)
    assert (width, height) == (1200, 1800)
    assert colours > 20, "the screenshot is (nearly) blank"
    table = ExampleRows()
    table.feed(dom)
    assert [cells[0] for _, cells in table.rows] == ["t-3", "t-7", "t-9", "t-1", "t-5", "c-1"]
    assert CHARGED_TWICE in dom and "How do I reset my password?" in dom
    assert '<details class="cell"><summary>' in dom
