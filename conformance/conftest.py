"""The conformance suite's pytest plugin: IUT/PICS/PIXIT, reference roles, verdicts, reports.

pytest conformance/                       # our reference stack on [::1]
pytest conformance/ --iut iut.yaml        # somebody else's implementation
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conformance import model, report
from conformance.iut import IutConfig, IutError, RoleConfig, load_iut
from conformance.model import Case, DeadlineExceeded, Inconclusive, Result
from conformance.observed import watch_responses
from conformance.requirements import check_cases
from conformance.security import (  # noqa: F401  # fixtures of the R197-SEC group
    secure_broker,
    secure_gateway,
    secure_platform,
    uplink_broker,
)
from conformance.stack import ReferenceStack

RESULTS = pytest.StashKey[list[Result]]()
DECLARED = pytest.StashKey[dict[str, Case]]()  # every collected case, selected or not
ROLE_FIXTURES = {
    "mqtt_broker": "mqtt-broker",
    "ngsild_platform": "ngsild-platform",
    "coap_device": "coap-device",
    "gateway": "gateway",
    "secure_broker": "mqtt-broker",  # R197-SEC: conformance/security.py
    "secure_platform": "ngsild-platform",
    "uplink_broker": "mqtt-broker",
    "secure_gateway": "gateway",
    "gateway_client": "gateway",  # the client-side TLS cases (test_security_clients.py)
    "device_client": "mqtt-device",
}
HERE = Path(__file__).resolve().parent


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("r197", "R197 conformance suite")
    group.addoption("--iut", type=Path, help="YAML file naming the implementation under test")
    group.addoption(
        "--r197-report", type=Path, default=Path("conformance-report"),
        help="directory for report.json, report.html, report.md and junit.xml "
        "(default conformance-report)",
    )  # fmt: skip


def _conformance_run(config: pytest.Config) -> bool:
    return any(str(HERE) in str(Path(a).resolve()) for a in config.args)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "r197(case): an R197 conformance test case")
    config.stash[RESULTS] = []
    config.stash[DECLARED] = {}
    if _conformance_run(config) and not config.option.xmlpath:
        out: Path = config.option.r197_report
        out.mkdir(parents=True, exist_ok=True)
        config.option.xmlpath = str(out / "junit.xml")


def _case(item: pytest.Item) -> Case | None:
    marker = item.get_closest_marker("r197")
    return marker.args[0] if marker else None


@pytest.hookimpl(tryfirst=True)  # before -k/-m/--deselect drop items: all cases are checked
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Fail collection on a duplicate case id, an unknown requirement or PICS item.

    A misspelt PICS item would otherwise make its case N/A without a word, and a misspelt
    requirement would leave the requirement looking uncovered.
    """
    declared = [(item.nodeid.split("[")[0], meta) for item in items if (meta := _case(item))]
    problems = check_cases(declared)
    if problems:
        raise pytest.UsageError(
            "R197 conformance cases do not match conformance/requirements.toml:\n  "
            + "\n  ".join(problems)
        )
    config.stash[DECLARED] = {meta.id: meta for _, meta in declared}


@pytest.fixture(scope="session")
def iut(pytestconfig: pytest.Config) -> IutConfig:
    try:
        return load_iut(pytestconfig.option.iut)
    except IutError as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceStack]:
    reference = ReferenceStack(tmp_path_factory.mktemp("reference"))
    yield reference
    reference.close()


@pytest.fixture(scope="session")
def mqtt_broker(iut: IutConfig, stack: ReferenceStack) -> RoleConfig:
    return iut.roles.get("mqtt-broker") or stack.broker()


@pytest.fixture(scope="session")
def ngsild_platform(iut: IutConfig, stack: ReferenceStack) -> RoleConfig:
    return iut.roles.get("ngsild-platform") or stack.platform()


@pytest.fixture
def api(ngsild_platform: RoleConfig) -> Iterator[httpx.Client]:
    """A client on the platform's NGSI-LD API with a fresh tenant (or the configured one)."""
    tenant = ngsild_platform.tenant or f"r197{uuid.uuid4().hex[:8]}"
    headers = {"NGSILD-Tenant": tenant} if tenant != "default" else {}
    with httpx.Client(
        base_url=ngsild_platform.url.rstrip("/") + "/ngsi-ld/v1", headers=headers, timeout=10
    ) as client:
        yield watch_responses(client)  # r.json() of a non-JSON answer is a fail (observed.py)


@pytest.fixture(scope="session")
def coap_device(iut: IutConfig, stack: ReferenceStack) -> RoleConfig:
    return iut.roles.get("coap-device") or stack.coap_device()


@pytest.fixture(scope="session")
def gateway(
    iut: IutConfig, stack: ReferenceStack, mqtt_broker: RoleConfig, ngsild_platform: RoleConfig
) -> RoleConfig:
    return iut.roles.get("gateway") or stack.gateway(mqtt_broker, ngsild_platform)


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> dict[str, float]:
    """Measured figures of a case (bytes per reading ...), copied into the reports."""
    store: dict[str, float] = {}
    request.node.r197_figures = store
    return store


def _roles(item: pytest.Item) -> tuple[str, ...]:
    """The roles a case exercises: the role fixtures it uses, directly or through others."""
    names = getattr(item, "fixturenames", ())
    return tuple(role for name, role in ROLE_FIXTURES.items() if name in names)


def pytest_runtest_setup(item: pytest.Item) -> None:
    meta = _case(item)
    if meta is None:
        return
    iut: IutConfig = item.session._r197_iut if hasattr(item.session, "_r197_iut") else None  # type: ignore[attr-defined]
    if iut is None:
        try:
            iut = load_iut(item.config.option.iut)
        except IutError as exc:
            raise pytest.UsageError(str(exc)) from None
        item.session._r197_iut = iut  # type: ignore[attr-defined]
    missing = [p for p in meta.pics if not iut.supports(p, _roles(item))]
    if missing:
        item.r197_na = f"PICS {', '.join(missing)} not supported"  # type: ignore[attr-defined]
        pytest.skip(f"N/A: {item.r197_na}")  # type: ignore[attr-defined]


def _iut_of(item: pytest.Item) -> IutConfig:
    cached: IutConfig | None = getattr(item.session, "_r197_iut", None)
    return cached if cached is not None else load_iut(item.config.option.iut)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, None]:
    """Every case has an overall deadline (PIXIT ``case.deadline_s``): when it passes, a
    SIGALRM raises DeadlineExceeded (inconclusive) in whatever the case is waiting on."""
    if _case(item) is None:
        yield
        return
    seconds = float(_iut_of(item).pixit_value("case.deadline_s"))

    def expired(signum: int, frame: object) -> None:
        raise DeadlineExceeded(
            f"the case did not end within its deadline of {seconds:g} s (PIXIT case.deadline_s)"
        )

    previous = signal.signal(signal.SIGALRM, expired)
    model.set_deadline(time.monotonic() + seconds)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        model.set_deadline(None)


def _fail_detail(exc: BaseException) -> str:
    """The reason of a failed assertion, never empty: the case's message, else pytest's
    explanation (``assert 200 == 201 ...``), else where it failed."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if lines and str(exc).splitlines()[0].strip():
        return lines[0][:500]  # the case's own message
    if lines:
        return " ".join(lines)[:500]
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f" at {Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}" if tb else ""
    return f"{type(exc).__name__} without a message{where}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    rep: pytest.TestReport = outcome.get_result()
    meta = _case(item)
    if meta is None:
        return
    verdict = None
    detail = ""
    if rep.when == "setup":
        if rep.skipped and getattr(item, "r197_na", None):
            verdict, detail = "n/a", item.r197_na  # type: ignore[attr-defined]
        elif rep.failed:
            verdict, detail = "error", str(call.excinfo.value) if call.excinfo else "setup failed"
    elif rep.when == "call":
        if rep.passed:
            verdict = "pass"
        elif call.excinfo is not None and call.excinfo.errisinstance(Inconclusive):
            verdict, detail = "inconclusive", str(call.excinfo.value)
            rep.outcome = "skipped"  # inconclusive is not a failure of the run
            rep.longrepr = ("", 0, f"inconclusive: {detail}")
        elif call.excinfo is not None and call.excinfo.errisinstance(AssertionError):
            verdict, detail = "fail", _fail_detail(call.excinfo.value)
        elif rep.skipped:
            verdict, detail = "n/a", str(rep.longrepr)[:300]
        else:
            verdict = "error"
            detail = f"{call.excinfo.typename}: {call.excinfo.value}" if call.excinfo else ""
    if verdict is None:
        return
    figures = getattr(item, "r197_figures", {})
    item.user_properties += [
        ("r197_id", meta.id), ("r197_verdict", verdict), ("r197_theme", meta.theme),
        ("r197_clauses", "; ".join(meta.clauses)), ("r197_verifies", " ".join(meta.verifies)),
    ]  # fmt: skip
    item.user_properties += [(f"r197_figure_{k}", str(v)) for k, v in figures.items()]
    item.config.stash[RESULTS].append(
        Result(
            meta,
            item.nodeid,
            verdict,
            detail[:1000],
            rep.duration,
            dict(figures),  # type: ignore[arg-type]
            _roles(item),
        )
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    results = session.config.stash.get(RESULTS, [])
    if not results:
        return
    try:
        iut = load_iut(session.config.option.iut)
    except IutError:
        return
    roles = {name: role.url for name, role in iut.roles.items()}
    declared = session.config.stash.get(DECLARED, {})
    doc = report.to_json(results, iut.implementation, roles, declared.values())
    out: Path = session.config.option.r197_report
    report.write(out, doc)
    session.config.stash[RESULTS] = []
    summary = ", ".join(f"{k} {v}" for k, v in sorted(doc["summary"].items()))
    summary += "; requirements: " + ", ".join(
        f"{k} {v}" for k, v in doc["requirement_summary"].items() if v
    )
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line(
            f"R197 conformance ({iut.implementation}): {summary}; report in {out}/report.html"
        )


def wait_until(predicate: Any, within: float = 10.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False
