"""Audiences as data: validation with clear errors, resolution (members, concerned countries,
regions, exclusions, suppressed addresses dropped), and rules/regions.toml itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from mailflow.outreach.audience import (
    AudienceError,
    ContactFacts,
    Geography,
    audience_from_json,
    audience_from_toml,
    load_geography,
    parse_audience,
    resolve,
)
from mailflow.store import make_engine, session_factory, upgrade
from mailflow.store.audience import concerned_countries, resolve_audience
from tests.campaign_support import AUDIENCE, seed

RULES = Path(__file__).resolve().parent.parent / "rules"


@pytest.fixture(scope="module")
def geo() -> Geography:
    return load_geography(RULES)


def facts(id_: int, email: str, role: str, country: str | None) -> ContactFacts:
    return ContactFacts(id_, email, role, country)


CONTACTS = [
    facts(1, "a@fr.example", "speaker", "FRA"),
    facts(2, "b@ke.example", "ipu_group", "KEN"),
    facts(3, "c@ug.example", "media", "UGA"),  # Africa, like Kenya
    facts(4, "d@br.example", "media", "BRA"),
    facts(5, "e@tr.example", "ambassador", "TUR"),
    facts(6, "f@no.example", "ngo", None),
    facts(7, "g@fr.example", "speaker", "FRA"),  # suppressed below
    facts(8, "a@fr.example", "mp", "FRA"),  # same address as contact 1: one row
]


def emails(geo: Geography, audience: object, suppressed: frozenset[str] = frozenset()) -> list[str]:
    resolved = resolve(parse_audience(audience, geo), CONTACTS, frozenset({"KEN"}), geo, suppressed)
    return [c.email for c in resolved.recipients]


def test_members_concerned_regions_and_lists(geo: Geography) -> None:
    assert emails(geo, {"include": [{"roles": ["speaker"], "countries": "members"}]}) == [
        "a@fr.example",
        "g@fr.example",
    ]
    assert emails(geo, {"include": [{"countries": "concerned"}]}) == ["b@ke.example"]
    assert emails(geo, {"include": [{"roles": ["media"], "regions": "concerned"}]}) == [
        "c@ug.example"
    ]
    assert emails(geo, {"include": [{"regions": ["un_latin_american_caribbean"]}]}) == [
        "d@br.example"
    ]
    assert emails(geo, {"include": [{"countries": ["tur", "BRA"]}]}) == [
        "d@br.example",
        "e@tr.example",
    ]
    # No country condition: contacts without a country too; "members" needs one.
    assert "f@no.example" in emails(geo, {"include": [{"roles": ["ngo"]}]})
    assert emails(geo, {"include": [{"roles": ["ngo"], "countries": "members"}]}) == []
    assert emails(geo, {"include": [{"roles": ["ngo"], "countries": "all"}]}) == ["f@no.example"]


def test_exclude_and_suppressed_and_one_row_per_address(geo: Geography) -> None:
    audience = {
        "include": [{"roles": ["speaker", "mp", "media"]}],
        "exclude": [{"roles": ["media"], "countries": ["BRA"]}],
    }
    resolved = resolve(
        parse_audience(audience, geo),
        CONTACTS,
        frozenset(),
        geo,
        frozenset({"g@fr.example"}),
    )
    assert [c.id for c in resolved.recipients] == [1, 3]  # 8 shares 1's address
    assert [c.email for c in resolved.suppressed] == ["g@fr.example"]


@pytest.mark.parametrize(
    ("audience", "message"),
    [
        ({"include": [{"roles": ["speakr"]}]}, "unknown role 'speakr' (did you mean 'speaker'?)"),
        ({"include": [{"role": ["speaker"]}]}, "unknown key 'role' (did you mean 'roles'?)"),
        ({"include": [{"countries": ["XXX"]}]}, "unknown ISO3 country code 'XXX'"),
        ({"include": [{"regions": ["un_africa"]}]}, "unknown region 'un_africa'"),
        ({"include": [{"countries": 3}]}, "include[0].countries: must be a non-empty list"),
        ({"include": []}, "at least one selector"),
        ({"inclde": [{}]}, "unknown key 'inclde'"),
        ({"include": [{"roles": []}]}, "include[0].roles: must be a non-empty list"),
        ([], "an audience is an object"),
    ],
)
def test_bad_audiences_are_explained(geo: Geography, audience: object, message: str) -> None:
    with pytest.raises(AudienceError) as caught:
        parse_audience(audience, geo)
    assert message in str(caught.value)


def test_every_problem_is_reported_at_once_with_its_place(geo: Geography) -> None:
    with pytest.raises(AudienceError) as caught:
        parse_audience({"include": [{"roles": ["x"]}, {"regions": ["y"]}]}, geo)
    assert "include[0].roles" in str(caught.value) and "include[1].regions" in str(caught.value)


def test_json_and_toml_forms_and_canonical_json(geo: Geography) -> None:
    from_json = audience_from_json(json.dumps(AUDIENCE), geo)
    from_toml = audience_from_toml(
        """
        [[include]]
        roles = ["speaker", "ipu_group"]
        countries = "members"
        [[include]]
        roles = ["ambassador"]
        countries = "concerned"
        [[include]]
        roles = ["media"]
        regions = "concerned"
        [[exclude]]
        countries = ["GBR"]
        """,
        geo,
    )
    assert from_json == from_toml
    assert json.loads(from_json.to_json()) == AUDIENCE
    with pytest.raises(AudienceError, match="not valid JSON"):
        audience_from_json("{", geo)


def test_regions_cover_every_un_member_once_per_scheme(geo: Geography) -> None:
    un_members = set(geo.country_names) - {"PSE", "VAT"}  # the two observer states
    assert len(un_members) == 193
    for scheme in ("un_group", "continent"):
        regions = [r for r in geo.regions.values() if r.scheme == scheme]
        listed = [code for r in regions for code in r.members if code in un_members]
        assert sorted(listed) == sorted(un_members), scheme  # each exactly once
    ipu = set().union(*(r.members for r in geo.regions.values() if r.scheme == "ipu_group"))
    assert un_members - ipu == {"USA"}  # not a member of the IPU
    assert geo.country_name("COD", "en") == "Democratic Republic of the Congo"
    assert geo.country_name("FRA", "fr") == "France"
    assert geo.country_name("KEN", "fr") == "Kenya"


# -- against the database ----------------------------------------------------------------------


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    upgrade(db_url)
    engine = make_engine(db_url)
    yield session_factory(engine)
    engine.dispose()


def test_resolution_against_the_contacts_table(
    sessions: sessionmaker[Session], geo: Geography
) -> None:
    with sessions.begin() as session:
        world = seed(session)
    with sessions() as session:
        assert concerned_countries(session, world.decision_id) == {"TUR", "KEN"}
        resolved = resolve_audience(session, parse_audience(AUDIENCE, geo), world.decision_id, geo)
    ids = {label: cid for label, cid in world.contacts.items()}
    assert [c.id for c in resolved.recipients] == sorted(
        ids[k]
        for k in ("speaker_fra", "group_deu", "group_ken", "amb_tur", "media_grc", "media_ken")
    )
    assert [c.id for c in resolved.suppressed] == [ids["suppressed"]]
