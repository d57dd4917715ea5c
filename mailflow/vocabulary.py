"""The Committee's controlled vocabularies, in English and French.

Pure data: no imports from the rest of mailflow. Codes are the ones of the labelled corpus
(`shared/corpus/SCHEMA.md`); the English and French labels of VIOLATIONS are the wording of the
Committee's decisions. Labels that SCHEMA.md does not give were written in the Committee's own
usage (the French of its decisions and of the "Report an MP in danger" form).

The database holds a copy of KINDS, VIOLATIONS, ACTION_TYPES, REPORTER_TYPES and RECIPIENT_ROLES
in vocabulary tables (seeded by migration 0001, which copies the data rather than importing this
module). Changing a tuple here therefore needs a new Alembic migration; tests/test_migrations.py
fails until the database at head matches this module again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Term:
    """One entry of a controlled vocabulary: a stable code and its labels."""

    code: str
    label_en: str
    label_fr: str


def codes(terms: Iterable[Term]) -> frozenset[str]:
    """The set of codes of `terms`."""
    return frozenset(term.code for term in terms)


# What a message is (label `kind` of the corpus).
KINDS: tuple[Term, ...] = (
    Term("report", "Report of an MP in danger", "Signalement d'un parlementaire en danger"),
    Term("followup", "Follow-up information", "Complément d'information"),
    Term("action_report", "Parliament's action report", "Rapport d'action d'un parlement"),
    Term("auto_reply", "Automatic reply", "Réponse automatique"),
    Term("bounce", "Non-delivery report", "Avis de non-remise"),
    Term("spam", "Spam", "Pourriel"),
    Term("other", "Other", "Autre"),
)

# Alleged violations, worded as in the Committee's decisions.
VIOLATIONS: tuple[Term, ...] = (
    Term("murder", "Murder", "Meurtre"),
    Term("enforced_disappearance", "Enforced disappearance", "Disparition forcée"),
    Term(
        "torture_violence",
        "Torture, ill-treatment and other acts of violence",
        "Torture, mauvais traitements et autres actes de violence",
    ),
    Term(
        "threats_intimidation",
        "Threats, acts of intimidation",
        "Menaces, actes d'intimidation",
    ),
    Term(
        "arbitrary_arrest_detention",
        "Arbitrary arrest and detention",
        "Arrestation et détention arbitraires",
    ),
    Term(
        "due_process_investigation",
        "Lack of due process at the investigation stage",
        "Non-respect des garanties d'une procédure régulière au stade de l'enquête",
    ),
    Term(
        "unfair_trial",
        "Lack of fair trial proceedings",
        "Procès et autres procédures non équitables",
    ),
    Term("excessive_delays", "Excessive delays", "Durée excessive de la procédure"),
    Term(
        "freedom_expression",
        "Violation of freedom of opinion and expression",
        "Atteinte à la liberté d'opinion et d'expression",
    ),
    Term(
        "freedom_assembly_association",
        "Violation of freedom of assembly and association",
        "Atteinte à la liberté de réunion et d'association",
    ),
    Term(
        "freedom_movement",
        "Violation of freedom of movement",
        "Atteinte à la liberté de mouvement",
    ),
    Term(
        "undue_suspension_loss_mandate",
        "Undue suspension and loss of parliamentary mandate",
        "Suspension et perte abusives du mandat parlementaire",
    ),
    Term(
        "abusive_revocation_mandate",
        "Abusive revocation of parliamentary mandate",
        "Révocation abusive du mandat parlementaire",
    ),
    Term(
        "immunity",
        "Failure to respect parliamentary immunity",
        "Non-respect de l'immunité parlementaire",
    ),
    Term(
        "obstruction_mandate",
        "Other acts obstructing the exercise of the mandate",
        "Autres actes empêchant l'exercice du mandat parlementaire",
    ),
    Term("privacy", "Violation of the right to privacy", "Atteinte au droit à la vie privée"),
    Term("impunity", "Impunity", "Impunité"),
    Term("other", "Other", "Autre"),
)

# What the Committee asks parliaments to do (the leaflet "Help us to help members of parliament
# under threat"); an action report says which of these a parliament did.
ACTION_TYPES: tuple[Term, ...] = (
    Term(
        "disseminate_decisions",
        "Bring the Committee's decisions to the members of parliament and to human rights "
        "institutions and bodies",
        "Porter les décisions du Comité à l'attention des parlementaires et des institutions "
        "et organes de défense des droits de l'homme",
    ),
    Term(
        "convey_to_authorities",
        "Convey the cases and decisions to authorities, institutions and organisations at "
        "national, regional and subregional level",
        "Transmettre les cas et les décisions aux autorités, institutions et organisations "
        "aux niveaux national, régional et sous-régional",
    ),
    Term(
        "inform_media",
        "Inform the media, publicise the parliament's and the IPU's activities on the cases",
        "Informer les médias, faire connaître les activités du parlement et de l'UIP "
        "relatives aux cas",
    ),
    Term(
        "parliamentary_visit",
        "Organise parliamentary visits, or mandate members travelling abroad, to raise the cases",
        "Organiser des visites parlementaires, ou charger des parlementaires en mission à "
        "l'étranger, pour évoquer les cas",
    ),
    Term(
        "raise_in_delegation_visit",
        "Raise the cases during visits to the country by delegations or authorities of the "
        "countries concerned",
        "Évoquer les cas lors des visites dans le pays de délégations ou d'autorités des pays "
        "concernés",
    ),
    Term(
        "request_mfa_intervention",
        "Ask the Minister of Foreign Affairs to take diplomatic measures",
        "Demander au ministre des affaires étrangères de prendre des mesures diplomatiques",
    ),
    Term(
        "joint_action_neighbours",
        "Joint action with the parliaments of neighbouring countries",
        "Action conjointe avec les parlements des pays voisins",
    ),
    Term(
        "approach_regional_intl_org",
        "Approach subregional, regional and international organisations",
        "Entreprendre des démarches auprès des organisations sous-régionales, régionales et "
        "internationales",
    ),
    Term(
        "debate_and_resolution",
        "Hold a parliamentary debate, adopt a resolution or declaration",
        "Tenir un débat parlementaire, adopter une résolution ou une déclaration",
    ),
    Term(
        "follow_up_mechanism",
        "Set up a mechanism within parliament to follow up the Committee's decisions",
        "Mettre en place au sein du parlement un mécanisme de suivi des décisions du Comité",
    ),
    Term(
        "bilateral_speaker",
        "Approach the Speaker and other authorities of the countries concerned",
        "Intervenir auprès du président du parlement et des autres autorités des pays concernés",
    ),
    Term(
        "contact_mps_country",
        "Contact parliamentarians in the countries concerned",
        "Prendre contact avec des parlementaires des pays concernés",
    ),
    Term(
        "meet_ambassador",
        "Meet the ambassadors of the countries concerned",
        "Rencontrer les ambassadeurs des pays concernés",
    ),
    Term("other", "Any other action", "Toute autre action"),
)

# Who wrote a report or follow-up.
REPORTER_TYPES: tuple[Term, ...] = (
    Term("mp_self", "The parliamentarian concerned", "Le ou la parlementaire concerné(e)"),
    Term("family", "A relative", "Un membre de la famille"),
    Term("legal_rep", "A lawyer or legal representative", "Un avocat ou un représentant légal"),
    Term("mp_other", "Another parliamentarian", "Un ou une autre parlementaire"),
    Term("parliament", "A parliament or its staff", "Un parlement ou son administration"),
    Term("party", "A political party", "Un parti politique"),
    Term(
        "ngo_national",
        "A national human rights organisation",
        "Une organisation nationale de défense des droits de l'homme",
    ),
    Term(
        "ngo_international",
        "An international human rights organisation",
        "Une organisation internationale de défense des droits de l'homme",
    ),
    Term("igo", "An intergovernmental organisation", "Une organisation intergouvernementale"),
    Term(
        "other_reliable",
        "Another reliable source (journalist, witness, citizen)",
        "Une autre source fiable (journaliste, témoin, citoyen)",
    ),
)

# The role of an outreach contact: to whom a campaign is addressed.
RECIPIENT_ROLES: tuple[Term, ...] = (
    Term("speaker", "Speaker of parliament", "Président(e) du parlement"),
    Term("ipu_group", "IPU national group", "Groupe national de l'UIP"),
    Term(
        "hr_committee",
        "Parliamentary human rights committee",
        "Commission parlementaire des droits de l'homme",
    ),
    Term("mp", "Member of parliament", "Parlementaire"),
    Term("media", "Media", "Médias"),
    Term("ambassador", "Ambassador", "Ambassadeur ou ambassadrice"),
    Term("mfa", "Ministry of Foreign Affairs", "Ministère des affaires étrangères"),
    Term(
        "regional_org",
        "Regional or international organisation",
        "Organisation régionale ou internationale",
    ),
    Term("ngo", "Non-governmental organisation", "Organisation non gouvernementale"),
)

# Where a case stands in the Committee's procedure. A CHECK constraint, not a table: the
# workflow code branches on these, so adding one is a code change anyway.
CASE_STATUSES: tuple[Term, ...] = (
    Term("preliminary", "Under preliminary review", "En cours d'examen préliminaire"),
    Term("open", "Under examination", "En cours d'examen"),
    Term("inadmissible", "Declared inadmissible", "Déclaré irrecevable"),
    Term("closed", "Closed", "Clos"),
)

# The "MP status" field of the report form.
MP_STATUSES: tuple[Term, ...] = (
    Term("sitting", "Sitting member of parliament", "Parlementaire en exercice"),
    Term("former", "Former member of parliament", "Ancien(ne) parlementaire"),
    Term("elect", "Member of parliament elect", "Parlementaire élu(e)"),
)
