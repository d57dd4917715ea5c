"""Reading FETCH responses as imaplib hands them over: the fast path and the generic fallback."""

from __future__ import annotations

from mailflow.imap_fetch import _bodies, _sizes, _uid_set


def test_usual_body_responses_are_read_by_uid() -> None:
    data = [(b"1 (UID 7 BODY[] {3}", b"abc"), b")", (b"2 (UID 9 BODY[] {2}", b"de"), b")"]
    assert _bodies(data) == {7: b"abc", 9: b"de"}


def test_other_shapes_go_through_the_generic_parser() -> None:
    # UID after the body, and an unsolicited flag change for another message in between.
    data = [
        (b"1 (BODY[] {3}", b"abc"),
        b" UID 7)",
        b"5 (FLAGS (\\Seen))",
        (b"2 (UID 9 FLAGS () BODY[] {2}", b"de"),
        b")",
    ]
    assert _bodies(data) == {7: b"abc", 9: b"de"}


def test_no_fetch_response_at_all_is_nothing() -> None:
    assert _bodies([None]) == {}
    assert _sizes([None]) == {}


def test_sizes_fast_path_and_fallback() -> None:
    assert _sizes([b"1 (UID 4 RFC822.SIZE 120)", b"2 (UID 5 RFC822.SIZE 9)"]) == {4: 120, 5: 9}
    assert _sizes([b"1 (RFC822.SIZE 120 UID 4)", b"2 (UID 5 RFC822.SIZE 9)"]) == {4: 120, 5: 9}


def test_uid_sets_are_compact_and_keep_every_uid() -> None:
    assert _uid_set([5]) == "5"
    assert _uid_set([1, 2, 3, 7, 9, 10]) == "1:3,7,9:10"
