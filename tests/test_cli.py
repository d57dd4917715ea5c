"""The `mailflow` command as a user runs it: real processes, real sockets, one-line errors."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers.ports import free_port

COMMANDS = ["serve", "init", "config", "db", "poll", "status"]


def mailflow(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailflow", *args],
        capture_output=True,
        text=True,
        env=_env(env),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILFLOW_")}
    env.update(extra or {})
    return env


def test_help_lists_every_command_with_one_line() -> None:
    result = mailflow("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        lines = [line for line in result.stdout.splitlines() if line.strip().startswith(command)]
        assert len(lines) == 1, command
        assert len(lines[0].split(None, 1)) == 2, f"{command} has no description"


def test_config_check_typo_names_key_and_file_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "mailflow.toml"
    path.write_text("[smtp_intake]\nprot = 2525\n", encoding="utf-8")
    for args in (
        ["--config", str(path), "config", "check"],
        ["config", "check", "--config", str(path)],
    ):
        result = mailflow(*args)
        assert result.returncode == 2
        assert "smtp_intake.prot" in result.stderr
        assert str(path) in result.stderr
        assert "did you mean smtp_intake.port?" in result.stderr


def test_config_via_environment_variable(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text("[service]\nlog_level = 'debug'\n", encoding="utf-8")
    assert mailflow("config", "check", env={"MAILFLOW_CONFIG": str(path)}).returncode == 0
    path.write_text("[service]\nlog_levl = 'debug'\n", encoding="utf-8")
    assert mailflow("config", "check", env={"MAILFLOW_CONFIG": str(path)}).returncode == 2


def test_errors_are_one_line_with_hint_and_no_traceback(tmp_path: Path) -> None:
    result = mailflow("--config", str(tmp_path / "missing.toml"), "status")
    assert result.returncode == 2
    assert result.stderr.startswith("mailflow: error: ")
    assert "hint: " in result.stderr
    assert "Traceback" not in result.stderr
    debug = mailflow("--debug", "--config", str(tmp_path / "missing.toml"), "status")
    assert "Traceback" in debug.stderr


def test_init_writes_working_config_and_database(tmp_path: Path) -> None:
    target = tmp_path / "site"
    result = mailflow("init", str(target))
    assert result.returncode == 0, result.stderr
    config = target / "mailflow.toml"
    assert (target / "data" / "mailflow.db").is_file()
    current = mailflow("--config", str(config), "db", "current")
    assert "up to date" in current.stdout
    assert mailflow("--config", str(config), "config", "check").returncode == 0
    again = mailflow("init", str(target))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    env = {
        "MAILFLOW_OUTBOUND_RELAY_PASSWORD": "pw-relay-7731",
        "MAILFLOW_DATABASE_URL": "postgresql+psycopg://u:pw-db-9913@db.example.org/x",
    }
    result = mailflow("config", "show", env=env)
    assert result.returncode == 0, result.stderr
    assert "pw-relay-7731" not in result.stdout
    assert "pw-db-9913" not in result.stdout
    assert "env MAILFLOW_OUTBOUND_RELAY_PASSWORD" in result.stdout


def _wait_for_port(port: int, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited early: {proc.stderr.read() if proc.stderr else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("serve did not listen in time")


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_serve_on_defaults_stores_smtp_mail_and_stops_cleanly(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    port = free_port()
    env = {
        "MAILFLOW_SMTP_INTAKE_PORT": str(port),
        "MAILFLOW_OUTBOUND_RELAY_PASSWORD": "pw-never-logged-5521",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailflow", "serve"],
        cwd=tmp_path,
        env=_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_port(port, proc)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            refused = client.sendmail(
                "a@example.org",
                ["report@localhost"],
                b"Subject: hello\r\nMessage-ID: <q1@example.org>\r\n\r\nhi\r\n",
            )
        assert refused == {}
        proc.send_signal(stop_signal)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "level=info" in stderr and "event=stopped" in stderr
    assert "pw-never-logged-5521" not in stderr
    db = tmp_path / "mailflow-data" / "mailflow.db"
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT message_id, status, subject FROM messages").fetchall()
    assert rows == [("<q1@example.org>", "processed", "hello")]
    assert (tmp_path / "mailflow-data" / "outbox" / "new").is_dir()
    status = mailflow("status", cwd=tmp_path)
    assert "processed 1" in status.stdout


def test_serve_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = mailflow("serve", cwd=tmp_path, env={"MAILFLOW_SMTP_INTAKE_PORT": str(port)})
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["db", "current"], ["status"]])
def test_commands_on_a_database_url_that_cannot_connect(command: list[str]) -> None:
    env = {"MAILFLOW_DATABASE_URL": "postgresql+psycopg://u:pw-5150@127.0.0.1:1/none"}
    result = mailflow(*command, env=env)
    assert result.returncode == 1
    assert "pw-5150" not in result.stderr
    assert result.stderr.startswith("mailflow: error: ")


def test_output_into_a_closed_pipe_is_not_an_error(tmp_path: Path) -> None:
    # The reader is gone before mailflow (half a second to start) writes a byte.
    command = f"{sys.executable} -m mailflow config example | true"
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        capture_output=True,
        text=True,
        env=_env(None),
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert "error" not in result.stderr
    assert result.returncode == 0
