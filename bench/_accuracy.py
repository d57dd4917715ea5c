"""Score `mailflow classify` against a labelled corpus in the SCHEMA.md format.

Prints per-field accuracy, micro-F1 for the list fields, urgent recall and precision, each
against the issue's target, then throughput against bare `mailparser.parse_from_bytes` on
the same bytes in the same process. Exit status 1 when a target is missed (`--check`).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mailparser

from mailflow.classify.rules import RuleSet, default_rules_dir
from mailflow.errors import MessageError
from mailflow.understanding import understand

Row = dict[str, Any]
PERSON_KINDS = {"report", "followup"}


@dataclass(frozen=True)
class Score:
    name: str
    value: float
    target: float | None
    n: int
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.target is None or self.value >= self.target - 1e-9


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(argv)
    corpus: Path = args.corpus
    labels = _labels(args.labels or corpus / "labels.jsonl")
    rules = RuleSet.load(args.rules or default_rules_dir())
    raws = {name: (corpus / name).read_bytes() for name in labels}
    predicted = {name: _predict(raw, rules) for name, raw in raws.items()}
    scores = score(labels, predicted)
    print(f"corpus {corpus} ({len(labels)} messages), rules {args.rules or default_rules_dir()}")
    _print_scores(scores)
    if args.errors:
        _print_errors(labels, predicted, args.errors)
    _throughput(list(raws.values()), rules, args.repeat)
    return 1 if args.check and not all(s.ok for s in scores) else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench/accuracy", description=__doc__)
    parser.add_argument("corpus", type=Path, metavar="CORPUS_DIR")
    parser.add_argument(
        "--labels", type=Path, help="labels file (default: CORPUS_DIR/labels.jsonl)"
    )
    parser.add_argument("--rules", type=Path, help="rules directory (default: rules/)")
    parser.add_argument(
        "--errors",
        nargs="*",
        metavar="FIELD",
        help="list every mismatch (of the given fields; all fields when none given)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="throughput passes (default 3)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    return parser


def _labels(path: Path) -> dict[str, Row]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return {row["file"]: row for row in rows}


def _predict(raw: bytes, rules: RuleSet) -> Row:
    try:
        return understand(raw, rules).classification.labels()
    except MessageError as exc:
        return {"kind": None, "error": str(exc)}


# -- scoring -------------------------------------------------------------------------------------


def score(labels: dict[str, Row], predicted: dict[str, Row]) -> list[Score]:
    names = sorted(labels)

    def subset(kinds: set[str]) -> list[str]:
        return [n for n in names if {labels[n]["kind"], predicted[n].get("kind")} & kinds]

    people, actions = subset(PERSON_KINDS), subset({"action_report"})
    bounces = subset({"bounce"})
    recall, precision, n_true = _urgent(labels, predicted, names)
    return [
        _accuracy("kind", names, labels, predicted, 0.97),
        _accuracy("language", names, labels, predicted, 0.97),
        Score("urgent recall", recall, 1.0, n_true),
        Score("urgent precision", precision, 0.90, len(names)),
        _accuracy("case_codes (exact)", names, labels, predicted, 0.95, "case_codes", set),
        _accuracy("country (report/followup)", people, labels, predicted, 0.95, "country"),
        _f1("violations", names, labels, predicted, 0.85),
        _f1("action_types", names, labels, predicted, 0.85),
        _accuracy(
            "reporter_type (report/followup)", people, labels, predicted, None, "reporter_type"
        ),
        _accuracy(
            "reporting_parliament (action_report)",
            actions,
            labels,
            predicted,
            None,
            "reporting_parliament",
        ),
        _f1("mp_names (family name)", names, labels, predicted, None, "mp_names", _family),
        _accuracy(
            "bounced_recipients (exact)",
            bounces,
            labels,
            predicted,
            0.95,
            "bounced_recipients",
            set,
        ),
        _accuracy("bounce_type", bounces, labels, predicted, None, "bounce_type"),
    ]


def _accuracy(
    name: str,
    names: list[str],
    labels: dict[str, Row],
    predicted: dict[str, Row],
    target: float | None,
    field: str | None = None,
    key: Callable[[Any], Any] = lambda value: value,
) -> Score:
    field = field or name
    right = sum(key(labels[n][field] or []) == key(predicted[n].get(field) or []) for n in names)
    return Score(name, right / len(names) if names else 1.0, target, len(names))


def _f1(
    name: str,
    names: list[str],
    labels: dict[str, Row],
    predicted: dict[str, Row],
    target: float | None,
    field: str | None = None,
    key: Callable[[str], str] = lambda value: value,
) -> Score:
    field = field or name
    tp = fp = fn = 0
    for n in names:
        truth = {key(v) for v in labels[n][field]}
        guess = {key(v) for v in predicted[n].get(field) or []}
        tp, fp, fn = tp + len(truth & guess), fp + len(guess - truth), fn + len(truth - guess)
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return Score(f"{name} micro-F1", f1, target, len(names), f"P {p:.2f} R {r:.2f}")


def _family(name: str) -> str:
    """Names are scored on the family name, written last in the labels' usage."""
    words = name.replace(",", " ").split()
    return words[-1].casefold() if words else ""


def _urgent(
    labels: dict[str, Row], predicted: dict[str, Row], names: Iterable[str]
) -> tuple[float, float, int]:
    pairs = [(bool(labels[n]["urgent"]), bool(predicted[n].get("urgent"))) for n in names]
    tp = sum(t and g for t, g in pairs)
    n_true, n_guess = sum(t for t, _ in pairs), sum(g for _, g in pairs)
    return (tp / n_true if n_true else 1.0), (tp / n_guess if n_guess else 1.0), n_true


def _print_scores(scores: list[Score]) -> None:
    print(f"\n{'field':<40} {'score':>7} {'target':>7} {'n':>4}  ")
    for s in scores:
        target = f"{s.target:.2f}" if s.target is not None else "-"
        verdict = "" if s.target is None else ("ok" if s.ok else "MISSED")
        print(f"{s.name:<40} {s.value:>7.3f} {target:>7} {s.n:>4}  {verdict} {s.detail}")


def _print_errors(labels: dict[str, Row], predicted: dict[str, Row], fields: list[str]) -> None:
    fields = fields or [f for f in next(iter(labels.values())) if f not in ("file", "notes")]
    print("\nmismatches:")
    for n in sorted(labels):
        for field in fields:
            truth, guess = labels[n].get(field), predicted[n].get(field)
            if isinstance(truth, list) and isinstance(guess, list):
                same = set(truth) == set(guess)
            else:
                same = truth == guess
            if not same and field in labels[n]:
                print(f"  {n}  {field}: expected {truth!r}, got {guess!r}")
        if "error" in predicted[n]:
            print(f"  {n}  unparseable: {predicted[n]['error']}")


# -- throughput ----------------------------------------------------------------------------------


def _throughput(raws: list[bytes], rules: RuleSet, repeat: int) -> None:
    bare = _rate(raws, repeat, mailparser.parse_from_bytes)
    ours = _rate(raws, repeat, lambda raw: _predict(raw, rules))
    print(f"\n{'throughput (same files, best of ' + str(repeat) + ')':<40} {'msg/s':>9}  ratio")
    print(f"{'mailparser.parse_from_bytes':<40} {bare:>9.0f}  1.00")
    print(f"{'mailflow parse + classify':<40} {ours:>9.0f}  {ours / bare:.2f}")


def _rate(raws: list[bytes], repeat: int, work: Callable[[bytes], object]) -> float:
    best = float("inf")
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        for raw in raws:
            try:
                work(raw)
            except Exception:  # bare mail-parser may raise on bad MIME; still timed
                continue
        best = min(best, time.perf_counter() - start)
    return len(raws) / best
