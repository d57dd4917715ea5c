"""E-mail templates (Jinja2): one directory per purpose, one file per language, English fallback.

    <root>/<purpose>/<language>.txt    plain-text body (required)
    <root>/<purpose>/<language>.html   HTML body (optional)

Shared by every purpose (acknowledgements, and campaigns with #5). A template receives the
fields of one frozen dataclass and nothing else, so what a purpose may show is decided by that
class; undefined names are errors, never silently empty. Autoescaping is on for HTML and any
other template, and off only for .txt bodies: those are sent as text/plain, where "&amp;" is
not an escape but a corrupted "&" (a parliament's or a person's name would arrive mangled).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

import jinja2

from mailflow.errors import MailflowError

FALLBACK_LANGUAGE = "en"
_LANGUAGE = re.compile(r"[a-z]{2,3}")
_PURPOSE = re.compile(r"[a-z][a-z0-9_]{0,63}")


class TemplateError(MailflowError):
    """A template is missing, broken, or asks for a value its context does not have."""


@dataclass(frozen=True)
class Rendered:
    language: str  # the language actually used (after the fallback)
    text: str
    html: str | None


def primary_language(language: str | None) -> str:
    """'fr-CH' -> 'fr'; anything that is not a language code -> ''."""
    code = (language or "").strip().lower().replace("_", "-").split("-")[0]
    return code if _LANGUAGE.fullmatch(code) else ""


class Templates:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(root),
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html", "htm", "xml"),
                disabled_extensions=("txt",),
                default_for_string=True,
                default=True,
            ),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )

    def language_for(self, purpose: str, language: str | None) -> str:
        """The language to render `purpose` in: the requested one if it has a template."""
        code = primary_language(language)
        if code and (self.root / _checked(purpose) / f"{code}.txt").is_file():
            return code
        return FALLBACK_LANGUAGE

    def render(self, purpose: str, language: str | None, context: Any) -> Rendered:
        """Render `purpose` for `context` (a dataclass instance) in `language`, else English."""
        if not is_dataclass(context) or isinstance(context, type):
            raise TypeError("a template context is a dataclass instance")
        values = {spec.name: getattr(context, spec.name) for spec in fields(context)}
        chosen = self.language_for(purpose, language)
        base = f"{_checked(purpose)}/{chosen}"
        text = self._render(f"{base}.txt", values)
        html_path = self.root / f"{base}.html"
        html = self._render(f"{base}.html", values) if html_path.is_file() else None
        return Rendered(chosen, text, html)

    def _render(self, name: str, values: dict[str, Any]) -> str:
        try:
            return self._env.get_template(name).render(values)
        except jinja2.TemplateNotFound:
            raise TemplateError(
                f"no template {name} in {self.root}",
                hint="set outbound.templates_dir to the directory holding mailflow's templates",
            ) from None
        except jinja2.TemplateError as exc:
            raise TemplateError(f"template {name}: {exc}") from None


def _checked(purpose: str) -> str:
    # The purpose becomes a path: never let it climb out of the template root.
    if not _PURPOSE.fullmatch(purpose):
        raise TemplateError(f"not a template purpose: {purpose[:40]!r}")
    return purpose
