"""pytest plugin: under CI, a skipped ``integration`` test fails the whole session.

``require()`` already fails instead of skipping under CI; this guard also catches every other
way an integration test can end up skipped (a ``skipif``, an ``importorskip``, a bare
``pytest.skip``), so that a CI run cannot pass without having talked to the real servers.

``tests/conftest.py`` installs it; ``pytest -p tests.servers.ci_guard`` loads it on its own.
"""

from __future__ import annotations

import pytest

from . import in_ci

PLUGIN_NAME = "mailflow-integration-guard"
MARKER = "integration"


class IntegrationSkipGuard:
    """Collects skipped integration tests and turns a passing session into a failing one."""

    def __init__(self) -> None:
        self.skipped: list[tuple[str, str]] = []  # (node id, skip reason)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # An xfail also reports as "skipped" but with `wasxfail`: that test did run.
        if report.skipped and MARKER in report.keywords and not hasattr(report, "wasxfail"):
            self.skipped.append((report.nodeid, _skip_reason(report)))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # Only upgrade a success: an interrupted or already failing session keeps its status.
        if self.skipped and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.skipped:
            return
        terminalreporter.write_sep(
            "=",
            f"CI=true: {len(self.skipped)} integration test(s) were skipped, failing the run",
            red=True,
            bold=True,
        )
        for nodeid, reason in self.skipped:
            terminalreporter.write_line(f"SKIPPED integration test {nodeid}: {reason}")


def _skip_reason(report: pytest.TestReport) -> str:
    # For skips, longrepr is (path, line number, "Skipped: <reason>").
    if isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(report.longrepr)


def install(config: pytest.Config) -> None:
    """Register the guard when running under CI (once, however it was requested)."""
    if in_ci() and not config.pluginmanager.has_plugin(PLUGIN_NAME):
        config.pluginmanager.register(IntegrationSkipGuard(), PLUGIN_NAME)


def pytest_configure(config: pytest.Config) -> None:
    install(config)
