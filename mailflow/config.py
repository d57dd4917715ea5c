"""Load and check the configuration: one TOML file plus MAILFLOW_* environment overrides.

Pure apart from reading the file and secret files: the environment is passed in as a mapping,
and the result is a frozen ``Settings`` value. Every problem becomes an ``Issue`` naming the
file and the dotted key, with a hint; ``load`` raises them as one ``ConfigError``.
"""

from __future__ import annotations

import difflib
import shlex
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Literal

from mailflow.config_checks import ENV_PREFIX, Collector, Issue, check_semantics, env_token
from mailflow.errors import ConfigError, SecretError
from mailflow.secret import Secret, read_secret_file
from mailflow.settings import (
    ACCOUNT_LIST,
    SECTIONS,
    ImapAccountSettings,
    Settings,
)

# Variables mailflow reads that are not key overrides.
RESERVED_ENV = frozenset({"MAILFLOW_CONFIG", "MAILFLOW_DEBUG", "MAILFLOW_TEST_POSTGRES_URL"})
SECRET_SUFFIXES = ("_env", "_file", "_command")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def config_path(cli_value: str | None, environ: Mapping[str, str]) -> Path | None:
    """--config wins over MAILFLOW_CONFIG; neither means embedded defaults."""
    value = cli_value or environ.get("MAILFLOW_CONFIG")
    return Path(value) if value else None


def load(path: Path | None, environ: Mapping[str, str]) -> Settings:
    settings, issues = check(path, environ)
    errors = [issue for issue in issues if issue.severity == "error"]
    if errors or settings is None:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(
            f"{first.where}: {first.key}: {first.message}{more}",
            hint=first.hint or "run `mailflow config check` to see every problem",
        )
    return settings


def check(path: Path | None, environ: Mapping[str, str]) -> tuple[Settings | None, list[Issue]]:
    where = str(path) if path else "defaults"
    base = path.parent if path else Path.cwd()
    out = Collector(where, environ, base)
    data = _read_toml(path, out)
    if data is None:
        return None, out.issues
    sections: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        raw = data.pop(name, {})
        if not isinstance(raw, dict):
            out.error(name, f"must be a table, got {_kind(raw)}", f"write it as [{name}]")
            raw = {}
        sections[name] = _build(cls, name, raw, out)
    accounts = _build_accounts(data.pop(ACCOUNT_LIST, []), out)
    for key in data:
        out.error(key, "unknown section", _did_you_mean(key, [*SECTIONS, ACCOUNT_LIST]))
    _check_environment(environ, accounts, out)
    settings = Settings(**sections, imap_accounts=accounts, source=path)
    data_dir = _absolute(_resolve(settings.service.data_dir, base))
    settings = replace(settings, service=replace(settings.service, data_dir=data_dir))
    check_semantics(settings, out)
    return settings, out.issues


def _read_toml(path: Path | None, out: Collector) -> dict[str, Any] | None:
    if path is None:
        return {}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        out.error("file", "not found", "create one with `mailflow init DIR`")
    except OSError as exc:
        out.error("file", f"cannot read: {exc.strerror}")
    except tomllib.TOMLDecodeError as exc:
        out.error("file", f"not valid TOML: {exc}")
    return None


def _build(
    cls: type[Any],
    prefix: str,
    raw: dict[str, Any],
    out: Collector,
    env_prefix: str | None = None,
) -> Any:
    """One section: file values, then environment overrides, then defaults."""
    hints = typing.get_type_hints(cls)
    env_prefix = env_prefix if env_prefix is not None else f"{ENV_PREFIX}{prefix.upper()}_"
    values: dict[str, Any] = {}
    known: set[str] = set()
    for spec in fields(cls):
        key, kind = spec.name, hints[spec.name]
        known.add(key)
        dotted = f"{prefix}.{key}"
        if is_secret(kind):
            known.update(key + suffix for suffix in SECRET_SUFFIXES)
            secret = _secret(key, dotted, raw, f"{env_prefix}{key.upper()}", out)
            if secret is not None:
                values[key] = secret
            continue
        env_name = f"{env_prefix}{key.upper()}"
        if spec.metadata.get("env", True) and env_name in out.environ:
            value = _from_env(kind, env_name, dotted, out)
        elif key in raw:
            value = _convert(kind, raw[key], dotted, out.base, out)
        else:
            continue
        if value is not None:
            values[key] = value
    for key in raw:
        if key not in known:
            out.error(f"{prefix}.{key}", "unknown key", _did_you_mean(key, sorted(known), prefix))
    return cls(**values)


def _build_accounts(raw: Any, out: Collector) -> tuple[ImapAccountSettings, ...]:
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        out.error(ACCOUNT_LIST, "must be an array of tables", f"write each as [[{ACCOUNT_LIST}]]")
        return ()
    accounts = []
    for index, item in enumerate(raw):
        name = item.get("name") if isinstance(item.get("name"), str) else str(index)
        env_prefix = f"{ENV_PREFIX}IMAP_{env_token(name)}_"
        prefix = f"{ACCOUNT_LIST}[{index}]"
        accounts.append(_build(ImapAccountSettings, prefix, dict(item), out, env_prefix))
    return tuple(accounts)


def _secret(
    key: str,
    dotted: str,
    raw: dict[str, Any],
    default_env: str,
    out: Collector,
) -> Secret | None:
    if key in raw:
        out.error(
            dotted,
            "secrets are not allowed in the config file",
            f"set {default_env} or use {key}_env / {key}_file",
        )
    given = [suffix for suffix in SECRET_SUFFIXES if key + suffix in raw]
    if len(given) > 1:
        out.error(dotted, f"set only one of {', '.join(key + s for s in given)}")
    for suffix in given:
        value = raw[key + suffix]
        if not isinstance(value, str) or not value:
            out.error(dotted + suffix, f"must be a non-empty string, got {_kind(value)}")
            return None
        if suffix == "_env":
            return _secret_from_env(value, dotted + suffix, out)
        if suffix == "_file":
            return _secret_from_file(_resolve(Path(value), out.base), dotted + suffix, out)
        return Secret(f"command for {dotted}", command=tuple(shlex.split(value)))
    if default_env in out.environ:
        return Secret(f"env {default_env}", out.environ[default_env])
    return None


def _secret_from_env(name: str, dotted: str, out: Collector) -> Secret | None:
    if name not in out.environ:
        out.error(dotted, f"environment variable {name} is not set", f"export {name}=...")
        return None
    return Secret(f"env {name}", out.environ[name])


def _secret_from_file(path: Path, dotted: str, out: Collector) -> Secret | None:
    """Checked now so `config check` reports a missing file, but read again at every use."""
    try:
        read_secret_file(path)
    except SecretError as exc:
        out.error(dotted, exc.message)
        return None
    return Secret(f"file {path}", path=path)


def is_secret(kind: Any) -> bool:
    return Secret in typing.get_args(kind)


def _convert(kind: Any, value: Any, dotted: str, base: Path, out: Collector) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    expected = _type_name(kind)
    if origin is Literal:
        if value in args:
            return value
        out.error(dotted, f"must be one of {', '.join(map(repr, args))}, got {value!r}")
        return None
    if origin is tuple:
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
    elif kind is Path:
        if isinstance(value, str):
            return _resolve(Path(value), base) if value else Path("")
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, kind):
        return value
    out.error(dotted, f"must be {expected}, got {_kind(value)}", f"for example {_example(kind)}")
    return None


def _from_env(kind: Any, env_name: str, dotted: str, out: Collector) -> Any:
    """Environment values are strings; coerce them, then validate like file values."""
    text = out.environ[env_name]
    value: Any = text
    if kind is int:
        try:
            value = int(text)
        except ValueError:
            out.error(dotted, f"{env_name}={text!r} is not a whole number", where="environment")
            return None
    elif kind is bool:
        if text.lower() not in _TRUE | _FALSE:
            out.error(dotted, f"{env_name}={text!r} is not true/false", where="environment")
            return None
        value = text.lower() in _TRUE
    elif typing.get_origin(kind) is tuple:
        value = [part.strip() for part in text.split(",") if part.strip()]
    return _convert(kind, value, dotted, Path.cwd(), out)


def _check_environment(
    environ: Mapping[str, str], accounts: tuple[ImapAccountSettings, ...], out: Collector
) -> None:
    """Warn about MAILFLOW_* variables nobody reads: usually a typo that silently does nothing."""
    known = set(RESERVED_ENV)
    for name, cls in SECTIONS.items():
        known.update(f"{ENV_PREFIX}{name.upper()}_{f.name.upper()}" for f in fields(cls))
    for account in accounts:
        token = env_token(account.name)
        known.update(f"{ENV_PREFIX}IMAP_{token}_{key}" for key in ("PASSWORD", "OAUTH2_TOKEN"))
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"did you mean {close[0]}?" if close else None
            out.warn(name, "environment variable is not used by mailflow", hint, "environment")


def _did_you_mean(key: str, candidates: list[str], prefix: str = "") -> str | None:
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    if not close:
        return "see mailflow.example.toml for every key"
    return f"did you mean {prefix + '.' if prefix else ''}{close[0]}?"


def _resolve(path: Path, base: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else base / path


def _absolute(path: Path) -> Path:
    return path if path.is_absolute() else Path.cwd() / path


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string"}.get(
        type(value), "a table" if isinstance(value, dict) else "a list"
    )


def _type_name(kind: Any) -> str:
    if typing.get_origin(kind) is tuple:
        return "a list of strings"
    return {int: "a whole number", bool: "true or false", str: "a string", Path: "a path"}.get(
        kind, str(kind)
    )


def _example(kind: Any) -> str:
    if typing.get_origin(kind) is tuple:
        return '["a", "b"]'
    return {int: "25", bool: "true", str: '"text"', Path: '"/var/lib/mailflow"'}.get(kind, "")
