"""Requirements as data: the registry, the collection checks and the per-requirement report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import matrix, report
from conformance.iut import REFERENCE_PICS
from conformance.model import Case, Result
from conformance.requirements import Registry, RegistryError, check_cases, registry
from tests.conftest import ROOT

FAKE = Registry.from_data(
    {
        "document": [
            {"key": "RFC7252", "name": "RFC 7252", "title": "CoAP", "requirements": [
                {"id": "RFC7252-4.3", "section": "4.3", "text": "ping gets RST"},
                {"id": "RFC7252-4.2", "section": "4.2", "text": "CON gets ACK"},
                {"id": "RFC7252-5.4.1", "section": "5.4.1", "text": "4.02 Bad Option"},
            ]},
        ],
        "pics": {"coap.observe": "Observe"},
    }
)  # fmt: skip


def fake_case(case_id: str, verifies: tuple[str, ...], pics: tuple[str, ...] = ()) -> Case:
    return Case(case_id, "objective", verifies, "interoperability", pics)


def result(c: Case, verdict: str, nodeid: str = "t.py::t") -> Result:
    return Result(c, nodeid, verdict)  # type: ignore[arg-type]


def test_shipped_registry_loads_with_unique_ids_and_mqtt_versions_apart() -> None:
    """The TOML loads, and [MQTT-3.1.2-24] of 3.1.1 and of 5 are two requirements."""
    known = registry()
    assert len(known.requirements) > 100
    assert known.requirements["MQTT311-3.1.2-24"].citation == "MQTT 3.1.1 3.1.2.10 [MQTT-3.1.2-24]"
    assert known.requirements["MQTT5-3.1.2-24"].document.name == "MQTT 5"
    assert known.citation("RFC7252-4.3") == "RFC 7252 4.3"


def test_registry_pics_are_the_items_the_reference_stack_declares() -> None:
    """Every PICS item has a description and a reference value, and no other item exists."""
    assert set(registry().pics) == set(REFERENCE_PICS)


def test_registry_rejects_a_requirement_listed_twice_or_under_another_document() -> None:
    """Ids are unique and carry their document's key."""
    doc = {"key": "RFC7252", "name": "RFC 7252", "title": "CoAP"}
    twice = [{"id": "RFC7252-4.3", "text": "a"}, {"id": "RFC7252-4.3", "text": "b"}]
    with pytest.raises(RegistryError, match=r"RFC7252-4\.3 is listed twice"):
        Registry.from_data({"document": [{**doc, "requirements": twice}]})
    other = [{"id": "RFC7641-3.1", "text": "a"}]
    with pytest.raises(RegistryError, match="does not start with RFC7252"):
        Registry.from_data({"document": [{**doc, "requirements": other}]})


def test_check_rejects_a_duplicate_case_id_naming_both_places() -> None:
    """Two tests declaring one id fail; the runs of one parametrized test do not."""
    one = fake_case("R197-COAP-01", ("RFC7252-4.3",))
    again = fake_case("R197-COAP-01", ("RFC7252-4.2",))
    assert check_cases([("a.py::t", one), ("a.py::t", one)], FAKE) == []
    problems = check_cases([("a.py::t", one), ("b.py::u", again)], FAKE)
    assert problems == ["duplicate case id R197-COAP-01: a.py::t and b.py::u"]


def test_check_rejects_an_unknown_requirement_naming_the_case() -> None:
    """A misspelt requirement id is an error, not an uncovered requirement."""
    bad = fake_case("R197-COAP-02", ("RFC7252-4.3", "RFC7252-4.33"))
    assert check_cases([("a.py::t", bad)], FAKE) == [
        "R197-COAP-02 (a.py::t) verifies unknown requirement 'RFC7252-4.33'"
    ]


def test_check_rejects_an_unknown_pics_item_naming_the_case() -> None:
    """A misspelt PICS item is an error, not a silent N/A."""
    bad = fake_case("R197-COAP-03", ("RFC7252-4.3",), ("coap.observe", "coap.obsreve"))
    assert check_cases([("a.py::t", bad)], FAKE) == [
        "R197-COAP-03 (a.py::t) needs unknown PICS item 'coap.obsreve'"
    ]


def test_a_case_must_verify_a_requirement() -> None:
    """A case that verifies nothing is refused when declared."""
    with pytest.raises(ValueError, match="verifies no requirement"):
        fake_case("R197-COAP-04", ())


def test_collection_fails_with_the_bad_name(tmp_path: Path) -> None:
    """pytest exits with a usage error naming the case and the misspelt PICS item."""
    (tmp_path / "test_bad.py").write_text(
        "from conformance.model import case\n"
        "@case('R197-X-01', 'o', verifies=['RFC7252-4.3'], theme='ipv6', pics=['coap.etags'])\n"
        "def test_one() -> None: ...\n"
        "@case('R197-X-01', 'o', verifies=['RFC7252-4.33'], theme='ipv6')\n"
        "def test_two() -> None: ...\n"
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not the project's settings
    cmd = [sys.executable, "-m", "pytest", "-p", "conformance.conftest", "-p", "no:cacheprovider"]
    cmd += ["--collect-only", "-q", "--rootdir", str(tmp_path), "-c", str(tmp_path / "pytest.ini")]
    done = subprocess.run(
        [*cmd, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert "R197-X-01 (test_bad.py::test_one) needs unknown PICS item 'coap.etags'" in done.stderr
    assert "duplicate case id R197-X-01" in done.stderr


def test_the_real_suite_collects_cleanly(tmp_path: Path) -> None:
    """Every case of conformance/ names known requirements and PICS items, ids unique."""
    cmd = [sys.executable, "-m", "pytest", "conformance", "--collect-only", "-q"]
    cmd += ["-p", "no:cacheprovider", "--r197-report", str(tmp_path)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "tests collected" in done.stdout


def test_report_counts_per_requirement_and_lists_the_uncovered() -> None:
    """Verified needs all cases passed; a fail fails it; n/a and not run are not executed."""
    ping = fake_case("R197-COAP-01", ("RFC7252-4.3",))
    ack = fake_case("R197-COAP-02", ("RFC7252-4.3", "RFC7252-4.2"))
    skipped = fake_case("R197-COAP-03", ("RFC7252-4.2",))
    results = [
        result(ping, "pass"),
        result(ack, "pass", "t.py::a[0]"),
        result(ack, "fail", "t.py::a[1]"),
    ]
    rows = {r["id"]: r for r in report.requirement_table(results, [ping, ack, skipped], FAKE)}
    assert rows["RFC7252-4.3"]["cases"] == {"R197-COAP-01": "pass", "R197-COAP-02": "fail"}
    assert (rows["RFC7252-4.3"]["verified"], rows["RFC7252-4.3"]["failed"]) == (1, 1)
    assert rows["RFC7252-4.3"]["status"] == "failed"
    assert rows["RFC7252-4.2"]["cases"]["R197-COAP-03"] == "not run"
    assert rows["RFC7252-4.2"]["not_executed"] == 1
    assert rows["RFC7252-5.4.1"]["status"] == "not covered"
    only_pass = report.requirement_table([result(ping, "pass")], [ping], FAKE)
    assert only_pass[0]["status"] == "verified"
    partly = report.requirement_table([result(ack, "pass"), result(skipped, "n/a")], [], FAKE)
    assert partly[1]["status"] == "partly verified"


def test_json_html_and_markdown_reports_carry_the_requirement_table(tmp_path: Path) -> None:
    """The JSON has the table as data; HTML and Markdown render it; matrix still reads it."""
    ping = fake_case("R197-COAP-08", ("RFC7252-4.3",))
    doc = report.to_json([result(ping, "pass")], "ACME", {}, [ping])
    row = next(r for r in doc["requirements"] if r["id"] == "RFC7252-4.3")
    assert row["cases"] == {"R197-COAP-08": "pass"}
    assert row["status"] == "verified"
    assert "MQTT311-3.1.0-2" in doc["uncovered"]
    assert doc["requirement_summary"]["verified"] == 1
    report.write(tmp_path, doc)
    assert "R197-COAP-08" in (tmp_path / "report.html").read_text()
    assert (
        "| RFC7252-4.3 | RFC 7252 4.3 | R197-COAP-08 pass | 1 | 0 | 0 | verified |"
        in (tmp_path / "report.md").read_text()
    )
    names, rows = matrix.build(matrix.load([tmp_path / "report.json"]))
    assert names == ["ACME"]
    assert rows[0]["verdicts"]["ACME"][0] == "pass"


def test_reports_written_before_requirements_still_render() -> None:
    """docs/interop/*.json (no requirement table) still load in matrix and render as HTML."""
    paths = sorted((ROOT / "docs" / "interop").glob("*.json"))
    assert paths
    for doc in matrix.load(paths):
        assert "Conformance report" in report.to_html(doc)
    assert "| case |" in matrix.markdown(matrix.load(paths))
    assert json.loads(paths[0].read_text())["results"]
