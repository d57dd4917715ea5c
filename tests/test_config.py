"""Configuration: TOML plus environment, every problem named by file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailflow import config
from mailflow.config_doc import render_example
from mailflow.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mailflow.toml"
    path.write_text(text, encoding="utf-8")
    return path


def errors(path: Path | None, environ: dict[str, str] | None = None) -> list[config.Issue]:
    _, issues = config.check(path, environ or {})
    return [issue for issue in issues if issue.severity == "error"]


def test_embedded_defaults_are_valid_and_use_sqlite_in_data_dir(tmp_path: Path) -> None:
    settings = config.load(None, {})
    assert settings.smtp_intake.host == "127.0.0.1"
    assert settings.smtp_intake.port == 2525
    assert settings.database_url.startswith("sqlite:///")
    assert settings.database_url.endswith("mailflow-data/mailflow.db")
    assert settings.outbox_dir == settings.service.data_dir / "outbox"


def test_typo_key_is_named_with_file_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, '[database]\nulr = "sqlite:///x.db"\n')
    [issue] = errors(path)
    assert issue.key == "database.ulr"
    assert issue.where == str(path)
    assert issue.hint == "did you mean database.url?"


def test_unknown_section_and_wrong_types_are_all_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[smtp_intak]\nport = 1\n[smtp_intake]\nport = "2525"\nenabled = "yes"\n'
        '[service]\nlog_level = "loud"\n',
    )
    keys = {issue.key for issue in errors(path)}
    assert keys == {"smtp_intak", "smtp_intake.port", "smtp_intake.enabled", "service.log_level"}


def test_relative_paths_are_taken_from_the_config_directory(tmp_path: Path) -> None:
    path = write(tmp_path, '[service]\ndata_dir = "state"\n')
    settings = config.load(path, {})
    assert settings.service.data_dir == tmp_path / "state"
    assert settings.database_url == f"sqlite:///{tmp_path / 'state' / 'mailflow.db'}"


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[smtp_intake]\nport = 2600\nrecipients = ["a@example.org"]\n')
    env = {
        "MAILFLOW_SMTP_INTAKE_PORT": "2700",
        "MAILFLOW_DATABASE_URL": "postgresql+psycopg://u:pw@db.example.org/mf",
        "MAILFLOW_SMTP_INTAKE_RECIPIENTS": "report@example.org, urgent@example.org",
        "MAILFLOW_DATABASE_AUTO_UPGRADE": "no",
    }
    settings = config.load(path, env)
    assert settings.smtp_intake.port == 2700
    assert settings.database_url == env["MAILFLOW_DATABASE_URL"]
    assert settings.smtp_intake.recipients == ("report@example.org", "urgent@example.org")
    assert settings.database.auto_upgrade is False


def test_bad_environment_value_names_the_variable() -> None:
    [issue] = errors(None, {"MAILFLOW_SMTP_INTAKE_PORT": "twenty"})
    assert issue.where == "environment"
    assert "MAILFLOW_SMTP_INTAKE_PORT" in issue.message


def test_unused_mailflow_variable_is_a_warning_with_suggestion() -> None:
    _, issues = config.check(None, {"MAILFLOW_DATABSE_URL": "sqlite://"})
    [issue] = issues
    assert issue.severity == "warning"
    assert issue.hint == "did you mean MAILFLOW_DATABASE_URL?"


ACCOUNT = """
[[imap_accounts]]
name = "reports"
host = "imap.example.org"
username = "report@example.org"
"""


def test_secret_in_file_is_refused_and_never_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, ACCOUNT + 'password = "hunter2-secret"\n')
    found = errors(path, {"MAILFLOW_IMAP_REPORTS_PASSWORD": "x"})
    assert [issue.key for issue in found] == ["imap_accounts[0].password"]
    assert all("hunter2" not in str(issue) for issue in found)


def test_missing_secret_names_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, ACCOUNT)
    [issue] = errors(path)
    assert issue.key == "imap_accounts[0].password"
    assert "MAILFLOW_IMAP_REPORTS_PASSWORD" in (issue.hint or "")


def test_secret_from_default_env_file_and_command(tmp_path: Path) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text("file-value\n", encoding="utf-8")
    path = write(
        tmp_path,
        ACCOUNT
        + '\n[[imap_accounts]]\nname = "b"\nhost = "h"\nusername = "u"\npassword_file = "token"\n'
        + '\n[[imap_accounts]]\nname = "c"\nhost = "h"\nusername = "u"\nauth = "oauth2"\n'
        + 'oauth2_token_command = "printf tok-123"\n',
    )
    settings = config.load(path, {"MAILFLOW_IMAP_REPORTS_PASSWORD": "env-value"})
    first, second, third = settings.imap_accounts
    assert first.password is not None and first.password.reveal() == "env-value"
    assert second.password is not None and second.password.reveal() == "file-value"
    assert third.oauth2_token is not None and third.oauth2_token.reveal() == "tok-123"
    # Masked wherever it is printed.
    assert "env-value" not in repr(settings)
    assert "file-value" not in str(second)


def test_plaintext_imap_only_on_loopback(tmp_path: Path) -> None:
    path = write(tmp_path, ACCOUNT + 'security = "plain"\n')
    [issue] = errors(path, {"MAILFLOW_IMAP_REPORTS_PASSWORD": "x"})
    assert issue.key == "imap_accounts[0].security"
    loopback = write(
        tmp_path, ACCOUNT.replace("imap.example.org", "127.0.0.1") + 'security = "plain"\n'
    )
    assert errors(loopback, {"MAILFLOW_IMAP_REPORTS_PASSWORD": "x"}) == []


def test_load_raises_one_config_error_naming_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[service]\nlog_levle = 'info'\n")
    with pytest.raises(ConfigError) as caught:
        config.load(path, {})
    assert str(path) in str(caught.value)
    assert "service.log_levle" in str(caught.value)


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    assert errors(write(tmp_path, "[service\n"))[0].message.startswith("not valid TOML")
    assert errors(tmp_path / "absent.toml")[0].message == "not found"


def test_config_path_precedence() -> None:
    assert config.config_path("a.toml", {"MAILFLOW_CONFIG": "b.toml"}) == Path("a.toml")
    assert config.config_path(None, {"MAILFLOW_CONFIG": "b.toml"}) == Path("b.toml")
    assert config.config_path(None, {}) is None


def test_committed_example_is_the_rendered_one_and_valid() -> None:
    example = REPO / "mailflow.example.toml"
    assert example.read_text(encoding="utf-8") == render_example(), (
        "regenerate with: mailflow config example > mailflow.example.toml"
    )
    assert errors(example) == []


def test_imap_tls_ca_file_must_load(tmp_path: Path) -> None:
    env = {"MAILFLOW_IMAP_REPORTS_PASSWORD": "x"}
    path = write(tmp_path, ACCOUNT + 'tls_ca_file = "missing-ca.pem"\n')
    [issue] = errors(path, env)
    assert issue.key == "imap_accounts[0].tls_ca_file"
    (tmp_path / "ca.pem").write_text("not a certificate", encoding="utf-8")
    path = write(tmp_path, ACCOUNT + 'tls_ca_file = "ca.pem"\n')
    assert [issue.key for issue in errors(path, env)] == ["imap_accounts[0].tls_ca_file"]
