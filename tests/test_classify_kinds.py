# ruff: noqa: RUF001  (multilingual test mail: Cyrillic letters and typographic quotes are the point)
"""Kinds of human mail: spam, other, action_report, followup, report, with their reasons."""

from __future__ import annotations

import pytest

from mailflow.classify import classify
from mailflow.classify.rules import RuleSet
from mailflow.parse.model import Forwarded, ParsedMessage
from tests.classify_support import kind_rules, msg


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    return kind_rules(tmp_path_factory)


def kind(rules: RuleSet, parsed: ParsedMessage) -> str:
    return classify(parsed, rules).kind


REPORTS = {
    "en": (
        "Arrest of opposition MP",
        "I am writing about Hon. Ruth Example, a member of parliament for the northern "
        "region, who was arrested at her home on 2 May and is detained at the central "
        "police station without charge. We ask the Committee to intervene.",
    ),
    "fr": (
        "Arrestation d'un député",
        "Je vous écris au sujet du député Marc Exemple, arrêté le 3 mai par des hommes en "
        "civil. Il est détenu au secret et sa famille a reçu des menaces de mort.",
    ),
    "es": (
        "Detención de diputada",
        "Les informo que la diputada Ana Ejemplo fue detenida el 4 de mayo sin orden "
        "judicial. Desde entonces está incomunicada y su abogado no ha podido verla.",
    ),
    "pt": (
        "Prisão de deputado",
        "O deputado João Exemplo foi preso no dia 5 de maio e está detido sem acusação. "
        "Recebeu ameaças de morte nas semanas anteriores.",
    ),
    "ar": (
        "اعتقال نائب",
        "نبلغكم أن النائب أحمد مثال عضو مجلس النواب تم اعتقاله يوم 6 مايو ولا نعرف مكان "
        "احتجازه، وقد تلقى تهديدات بالقتل.",
    ),
    "ru": (
        "Арест депутата",
        "Сообщаем, что депутат Иван Пример был задержан 7 мая. Его держат без связи с "
        "адвокатом, ранее он получал угрозы.",
    ),
}


@pytest.mark.parametrize("language", sorted(REPORTS))
def test_new_reports_in_six_languages(rules: RuleSet, language: str) -> None:
    subject, body = REPORTS[language]
    result = classify(msg(subject, body, sender=f"Writer <w.{language}@mail.test>"), rules)
    assert result.kind == "report"
    assert result.language == language
    decision = [f for f in result.fired if f.rule == "kinds.decision"]
    assert decision and decision[0].value == "report"
    assert any(f.rule == "kinds.mp" for f in result.fired)


ACTION_REPORTS = {
    "en": (
        "Action taken by our IPU Group",
        "On behalf of the National Group of the IPU, I have the honour to inform you of "
        "the following actions taken. The decisions were circulated to all members in "
        "March. On 2 April the Chair met the Ambassador and raised the case.",
    ),
    "fr": (
        "Démarches du Groupe de l'UIP",
        "Le Groupe national de l'UIP vous informe des démarches entreprises : le président "
        "a écrit au ministre des Affaires étrangères et la Chambre a adopté une résolution.",
    ),
    "es": (
        "Acciones del Grupo Interparlamentario",
        "Les informo de las acciones realizadas: el Senado aprobó un proyecto de acuerdo y "
        "la Comisión se reunió con el Embajador para expresar su preocupación.",
    ),
}


@pytest.mark.parametrize("language", sorted(ACTION_REPORTS))
def test_action_reports(rules: RuleSet, language: str) -> None:
    subject, body = ACTION_REPORTS[language]
    result = classify(msg(subject, body, sender="Parliament <ipu@house.test>"), rules)
    assert result.kind == "action_report"
    assert sum(f.value == "action" for f in result.fired) >= 2


def test_parliament_reply_to_mailing_of_decisions(rules: RuleSet) -> None:
    parsed = msg(
        "RE: Decisions of the Governing Council on the human rights of parliamentarians",
        "Thank you. The decisions have been distributed to all members of the "
        "Foreign Affairs Committee.",
        sender="Intl Dept <intl@house.test>",
        in_reply_to="mailing-1@ipu.example",
    )
    assert kind(rules, parsed) == "action_report"


def test_mp_reporting_a_colleague_is_a_report_not_an_action_report(rules: RuleSet) -> None:
    parsed = msg(
        "Threats against my colleague",
        "I am a member of parliament and a member of the IPU group of my parliament. "
        "My colleague, the deputy for the capital, received death threats and his "
        "house was set on fire. I ask the Committee to act.",
        sender="Hon. X <x@parliament.test>",
    )
    assert kind(rules, parsed) == "report"


def test_reply_with_new_facts_is_a_followup(rules: RuleSet) -> None:
    parsed = msg(
        "Re: Arrest of opposition MP",
        "The MP was brought before a military court yesterday and denied bail.",
        in_reply_to="ack-7@ipu.example",
    )
    result = classify(parsed, rules)
    assert result.kind == "followup"
    assert "reply" in next(f.evidence for f in result.fired if f.rule == "kinds.decision")


def test_update_wording_without_reply_headers_is_a_followup(rules: RuleSet) -> None:
    for subject, body in [
        ("Information", "Further to my message of 2 May: the deputy is still detained."),
        (
            "Caso ABC-12",
            "Les hacemos llegar información actualizada sobre el caso ABC-12: "
            "el exdiputado sigue detenido.",
        ),
        ("Nouvelles", "Suite à mon message du 2 mai, le député est toujours détenu."),
    ]:
        assert kind(rules, msg(subject, body)) == "followup", subject


def test_forwarded_report_is_a_report(rules: RuleSet) -> None:
    inner = Forwarded(
        "inline",
        None,
        "Help",
        None,
        "My husband, a senator, was abducted on Monday; nobody knows where he is.",
    )
    parsed = msg(
        "Fwd: Help",
        "Please see the message below from the wife of a senator.",
        forwarded=(inner,),
        in_reply_to="x@y.test",
    )
    assert kind(rules, parsed) == "report"


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        (
            "Press enquiry: MPs at risk",
            "I'm a correspondent preparing a piece on opposition parliamentarians who were "
            "arrested this year. How many cases does the Committee examine? My deadline is Friday.",
        ),
        (
            "Invitation",
            "We would be pleased to welcome a representative of the Committee at our side event on "
            "protecting MPs at risk. Please accept or decline the attached invitation.",
        ),
        (
            "Consulta",
            "Soy estudiante y escribo mi tesis sobre la protección de parlamentarios. "
            "¿Existe una base de datos con las decisiones del Comité?",
        ),
        (
            "Demande",
            "Je suis professeur et je prépare avec mes élèves un projet. Pourriez-vous "
            "m'indiquer s'il existe des documents pédagogiques ?",
        ),
        ("Lunch", "Shall we meet for lunch next Tuesday?"),
    ],
)
def test_other_mail(rules: RuleSet, subject: str, body: str) -> None:
    assert kind(rules, msg(subject, body)) == "other"


def test_general_reply_without_case_substance_is_other(rules: RuleSet) -> None:
    parsed = msg(
        "Re: Question about your publications",
        "Many thanks for the links, very useful.",
        in_reply_to="answer@ipu.example",
    )
    assert kind(rules, parsed) == "other"


@pytest.mark.parametrize(
    ("subject", "body", "headers"),
    [
        (
            "Action required: your mailbox password expires today",
            "Verify your account within 24 hours to avoid losing access to your messages.",
            (),
        ),
        (
            "Confidential business proposal",
            "I am a member of parliament. We discovered an over-invoiced contract in a suspense "
            "account; you will take 30% for your assistance.",
            (),
        ),
        (
            "Your rankings",
            "Your site is not ranking on the first page of Google. We offer a "
            "free audit and link building; prices start at USD 99.",
            (),
        ),
        ("Hello", "A message about something.", (("x-spam-flag", "YES"),)),
    ],
)
def test_spam(
    rules: RuleSet, subject: str, body: str, headers: tuple[tuple[str, str], ...]
) -> None:
    result = classify(msg(subject, body, headers=headers), rules)
    assert result.kind == "spam"
    assert any(f.rule.startswith("spam.") for f in result.fired)


def test_one_marketing_phrase_is_not_spam(rules: RuleSet) -> None:
    body = "Early-bird registration for our annual human rights conference closes on Friday."
    assert kind(rules, msg("Conference", body)) == "other"


def test_newsletter_is_other_unless_harvested_promotion(rules: RuleSet) -> None:
    list_headers = (("list-id", "<news.ngo.test>"), ("list-unsubscribe", "<mailto:u@ngo.test>"))
    news = msg(
        "Monthly news",
        "This month: an MP was arrested and detained in a neighbouring "
        "country; our statement calls for his release.",
        headers=list_headers,
    )
    assert kind(rules, news) == "other"
    promo = msg(
        "10 summits you can't miss",
        "Sponsor a session and reach 40,000 decision-makers. You are receiving this "
        "email because your address is listed in our directory.",
        headers=list_headers,
    )
    assert kind(rules, promo) == "spam"


def test_bounce_fields_stay_empty_for_human_mail(rules: RuleSet) -> None:
    subject, body = REPORTS["en"]
    result = classify(msg(subject, body, headers=(("x-failed-recipients", ""),)), rules)
    assert result.bounced_recipients == () and result.bounce_type is None


def test_classify_is_pure(rules: RuleSet) -> None:
    parsed = msg(*REPORTS["fr"])
    assert classify(parsed, rules) == classify(parsed, rules)
