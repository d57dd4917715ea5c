"""`mailflow campaign ...` end to end: a configuration file, the real command, a real SMTP sink.

create -> show --recipients -> send refused -> test copy -> approve -> send -> pause (worker
holds) -> resume -> status done -> preview = received bytes -> remind --dry-run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from mailflow import cli
from mailflow.store import make_engine, upgrade
from tests.campaign_support import AUDIENCE, World, parsed, seed
from tests.servers.smtp_sink import SMTPSink


def write_config(tmp_path: Path, db_url: str, sink: SMTPSink) -> Path:
    path = tmp_path / "mailflow.toml"
    path.write_text(
        f"""
[service]
data_dir = "{tmp_path / "data"}"

[database]
url = "{db_url}"

[outbound]
from_address = "committee@ipu.example"
bounce_domain = "bounces.ipu.example"
relay_host = "{sink.host}"
relay_port = {sink.port}
relay_security = "none"

[campaigns]
unsubscribe_url_base = "https://ipu.example/unsubscribe/"
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def world(db_url: str) -> World:
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with Session(engine) as session, session.begin():
            return seed(session)
    finally:
        engine.dispose()


def run(config: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["--config", str(config), *argv], environ={})
    out, err = capsys.readouterr()
    return code, out, err


def test_campaign_commands_end_to_end(
    tmp_path: Path,
    db_url: str,
    world: World,
    smtp_sink: SMTPSink,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = write_config(tmp_path, db_url, smtp_sink)
    audience = tmp_path / "audience.json"
    audience.write_text(json.dumps(AUDIENCE), encoding="utf-8")
    code, out, err = run(
        config, capsys, "campaign", "create", "--name", "213th session",
        "--decision", str(world.decision_id), "--audience", str(audience),
        "--subject-en", "Decisions of the 213th session",
        "--subject-fr", "Décisions de la 213e session", "--by", "Rogier",
    )  # fmt: skip
    assert code == 0, err
    match = re.search(r"campaign (\d+) created", out)
    assert match is not None
    cid = match.group(1)

    code, out, _ = run(config, capsys, "campaign", "show", cid, "--recipients")
    assert code == 0 and "NOT approved" in out and "recipients: 6" in out
    assert "speaker@assemblee.fr" in out and "suppressed\t" in out

    code, _, err = run(config, capsys, "campaign", "send", cid)
    assert code == 1 and "not approved" in err

    code, out, err = run(config, capsys, "campaign", "test", cid, "--to", "me@ipu.example")
    assert code == 0, err
    assert run(config, capsys, "send", "--once")[0] == 0
    [test_copy] = smtp_sink.messages
    assert parsed(test_copy.data)["Subject"] == "[TEST] Decisions of the 213th session"
    smtp_sink.reset()

    code, out, err = run(config, capsys, "campaign", "approve", cid, "--by", "Rogier Huizenga")
    assert code == 0, err
    code, out, err = run(config, capsys, "campaign", "send", cid)
    assert code == 0, err
    assert "queued 6 message(s)" in out and "1 suppressed" in out

    assert run(config, capsys, "campaign", "pause", cid)[1].strip() == f"campaign {cid} is paused"
    assert run(config, capsys, "send", "--once")[0] == 0
    assert smtp_sink.messages == []
    code, out, _ = run(config, capsys, "campaign", "status", cid)
    assert "paused" in out and "decision: pending 6" in out

    run(config, capsys, "campaign", "resume", cid)
    assert run(config, capsys, "send", "--once")[0] == 0
    assert len(smtp_sink.messages) == 6
    code, out, _ = run(config, capsys, "campaign", "status", cid)
    assert f"campaign {cid}: done" in out and "decision: sent 6" in out

    eml = tmp_path / "speaker.eml"
    contact = str(world.contacts["speaker_fra"])
    code, _, err = run(
        config, capsys, "campaign", "preview", cid, "--to", contact, "--out", str(eml)
    )
    assert code == 0, err
    received = {m.rcpt_tos[0]: m.data for m in smtp_sink.messages}
    assert eml.read_bytes() == received["speaker@assemblee.fr"]

    code, out, err = run(config, capsys, "campaign", "remind", cid, "--dry-run")
    assert code == 0, err
    assert out.startswith("0 reminder(s) due")


def test_bad_input_is_one_line_with_a_hint(
    tmp_path: Path,
    db_url: str,
    world: World,
    smtp_sink: SMTPSink,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = write_config(tmp_path, db_url, smtp_sink)
    bad = json.dumps({"include": [{"roles": ["speakr"], "countrys": "members"}]})
    code, _, err = run(
        config, capsys, "campaign", "create", "--name", "x", "--decision",
        str(world.decision_id), "--audience-json", bad, "--by", "Rogier",
    )  # fmt: skip
    assert code == 1
    assert "unknown role 'speakr'" in err and "unknown key 'countrys'" in err
    assert "hint:" in err
    code, _, err = run(config, capsys, "campaign", "approve", "999", "--by", "Rogier")
    assert code == 1 and "no campaign 999" in err
