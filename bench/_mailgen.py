# Multilingual word lists are the point here: Cyrillic, Greek and Turkish letters are meant.
# ruff: noqa: RUF001
"""Deterministic, realistic test mail for the benchmarks.

Message ``i`` of seed ``s`` is always the same bytes, whatever else is generated: each message has
its own random generator seeded from ``(s, i)``, so a prefix of a larger set equals a smaller set.

Each message is 5-20 KB of plain text in one of several languages and scripts, with the headers
real mail carries (Received, Message-ID, Date, From, To, Subject in RFC 2047 when not ASCII,
MIME), in 8bit, quoted-printable or base64. About 5% are multipart with a 200 KB base64
attachment. Line ends are LF, as Dovecot stores messages in a Maildir.
"""

from __future__ import annotations

import base64
import quopri
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.header import Header
from email.utils import format_datetime, formataddr

ATTACHMENT_RATE = 0.05
ATTACHMENT_BYTES = 150_000  # 200 KB once base64-encoded
TEXT_BYTES = (5_000, 20_000)
LINE_WIDTH = 72
START = datetime(2024, 1, 1, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Language:
    code: str
    words: tuple[str, ...]
    subjects: tuple[str, ...]
    names: tuple[str, ...]


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


LANGUAGES: tuple[Language, ...] = (
    Language(
        "en",
        _words(
            "the committee parliament member report hearing urgent request information case "
            "detention release trial court lawyer family visit health statement government "
            "authorities mission follow-up decision session regarding concerning please find "
            "attached recent developments we would like to inform you that has been was is "
            "are and of in on for with by from after before during since under about human "
            "rights freedom expression assembly immunity opposition election arrest charges"
        ),
        (
            "Urgent: situation of {n}",
            "Follow-up to our letter of {d}",
            "Request for information on case {c}",
            "Re: hearing scheduled for {d}",
            "Update on the detention of {n}",
        ),
        ("Alice Johnson", "Robert Smith", "Mary O'Brien", "James Wilson", "Grace Okafor"),
    ),
    Language(
        "fr",
        _words(
            "le la les comité parlementaire député rapport audience demande urgente dossier "
            "détention libération procès tribunal avocat famille visite santé déclaration "
            "gouvernement autorités mission suivi décision session concernant veuillez trouver "
            "ci-joint évolution récente nous souhaitons vous informer que été est sont et de "
            "du dans sur pour avec par depuis après avant pendant droits humains liberté "
            "d'expression réunion immunité opposition élection arrestation accusations"
        ),
        (
            "Urgent : situation de {n}",
            "Suite à notre lettre du {d}",
            "Demande d'informations sur le dossier {c}",
            "Réf. : audience prévue le {d}",
            "Point sur la détention de {n}",
        ),
        ("Élodie Lefèvre", "François Dubois", "Hélène Garçon", "Jérôme Bélanger", "Amélie Roux"),
    ),
    Language(
        "es",
        _words(
            "el la los las comité parlamentario diputado informe audiencia solicitud urgente "
            "caso detención liberación juicio tribunal abogado familia visita salud declaración "
            "gobierno autoridades misión seguimiento decisión sesión relativo adjunto "
            "información reciente queremos informarle que ha sido es son y de en sobre para "
            "con por desde después antes durante derechos humanos libertad expresión reunión "
            "inmunidad oposición elección arresto cargos señor señora año"
        ),
        (
            "Urgente: situación de {n}",
            "Seguimiento de nuestra carta del {d}",
            "Solicitud de información sobre el caso {c}",
            "Actualización sobre la detención de {n}",
        ),
        ("José Núñez", "María Peña", "Andrés Muñoz", "Lucía Fernández", "Íñigo Saldaña"),
    ),
    Language(
        "ar",
        _words(
            "اللجنة البرلمان عضو تقرير جلسة طلب عاجل معلومات قضية احتجاز الإفراج محاكمة "
            "المحكمة محامي الأسرة زيارة الصحة بيان الحكومة السلطات بعثة متابعة قرار دورة "
            "بشأن يرجى الاطلاع المرفق التطورات الأخيرة نود إبلاغكم أن تم هو هي و من في على "
            "مع بعد قبل خلال حقوق الإنسان حرية التعبير التجمع الحصانة المعارضة الانتخابات "
            "اعتقال التهم"
        ),
        ("عاجل: وضع {n}", "متابعة لرسالتنا بتاريخ {d}", "طلب معلومات عن القضية {c}"),
        ("أحمد منصور", "فاطمة الزهراء", "يوسف حداد", "ليلى خوري"),
    ),
    Language(
        "ru",
        _words(
            "комитет парламент депутат доклад слушание срочный запрос информация дело "
            "задержание освобождение суд адвокат семья визит здоровье заявление правительство "
            "власти миссия решение сессия относительно прилагаем последние события сообщаем "
            "что был была является и в на для с по после до во время права человека свобода "
            "выражения собраний иммунитет оппозиция выборы арест обвинения"
        ),
        ("Срочно: положение {n}", "В продолжение письма от {d}", "Запрос информации по делу {c}"),
        ("Анна Иванова", "Сергей Петров", "Ольга Смирнова", "Дмитрий Козлов"),
    ),
    Language(
        "zh",
        _words(
            "委员会 议会 议员 报告 听证 紧急 请求 信息 案件 拘留 释放 审判 法院 律师 家属 "
            "探视 健康 声明 政府 当局 代表团 跟进 决定 会议 关于 请查收 附件 最新 进展 我们 "
            "通知 您 已经 是 和 在 对 与 之后 之前 期间 人权 自由 言论 集会 豁免 反对派 选举 "
            "逮捕 指控"
        ),
        ("紧急：{n}的情况", "关于{d}来信的跟进", "关于案件{c}的信息请求"),
        ("王伟", "李娜", "张敏", "刘洋"),
    ),
    Language(
        "el",
        _words(
            "επιτροπή κοινοβούλιο βουλευτής έκθεση ακρόαση επείγον αίτημα πληροφορίες υπόθεση "
            "κράτηση απελευθέρωση δίκη δικαστήριο δικηγόρος οικογένεια επίσκεψη υγεία δήλωση "
            "κυβέρνηση αρχές αποστολή απόφαση σύνοδος σχετικά συνημμένο εξελίξεις ενημερώνουμε "
            "ότι ήταν είναι και του της στο για με από μετά πριν ανθρώπινα δικαιώματα ελευθερία"
        ),
        ("Επείγον: η κατάσταση του {n}", "Συνέχεια της επιστολής της {d}"),
        ("Νίκος Παπαδόπουλος", "Ελένη Γεωργίου", "Γιάννης Οικονόμου"),
    ),
    Language(
        "tr",
        _words(
            "komite parlamento milletvekili rapor duruşma acil talep bilgi dava gözaltı "
            "tahliye yargılama mahkeme avukat aile ziyaret sağlık açıklama hükümet yetkililer "
            "heyet karar oturum ilişkin ekte son gelişmeler bildirmek isteriz ki oldu ve ile "
            "için sonra önce sırasında insan hakları özgürlük ifade toplanma dokunulmazlık "
            "muhalefet seçim tutuklama suçlamalar"
        ),
        ("Acil: {n} hakkında durum", "{d} tarihli mektubumuzun devamı"),
        ("Ayşe Yılmaz", "Mehmet Öztürk", "Zeynep Çelik", "Emre Şahin"),
    ),
)
# English and French dominate the real mailbox; every other language appears regularly.
LANGUAGE_WEIGHTS = (30, 25, 12, 9, 7, 7, 5, 5)
DOMAINS = ("example.org", "example.net", "mail.example.com", "parliament.example", "ngo.example")
MAILERS = ("Microsoft Outlook 16.0", "Thunderbird 115.6.0", "Apple Mail (2.3774)", "Roundcube 1.6")


@dataclass(frozen=True)
class Corpus:
    """What a generated set holds, for the benchmark's header."""

    messages: int
    total_bytes: int
    attachments: int


def generate(seed: int, index: int) -> bytes:
    """Message ``index`` of the set named by ``seed``: always the same bytes."""
    rng = random.Random(seed * 1_000_003 + index)
    language = rng.choices(LANGUAGES, weights=LANGUAGE_WEIGHTS)[0]
    sender = _address(rng, language)
    recipient = formataddr(("Committee Secretariat", "committee@secretariat.example"))
    when = START + timedelta(seconds=index * 317 + rng.randrange(300))
    text = _text(rng, language, rng.randint(*TEXT_BYTES))
    body_headers, body = _text_part(rng, text)
    headers = [
        f"Return-Path: <{sender[1]}>",
        *_received(rng, when, sender[1]),
        f"Message-ID: <{seed}.{index}.{rng.getrandbits(64):016x}@{sender[1].split('@')[1]}>",
        f"Date: {format_datetime(when)}",
        f"From: {formataddr(sender, charset='utf-8')}",
        f"To: {recipient}",
        f"Subject: {_subject(rng, language, index)}",
        f"Content-Language: {language.code}",
        f"X-Mailer: {rng.choice(MAILERS)}",
        "MIME-Version: 1.0",
    ]
    if rng.random() < 0.2:
        headers.append(f"In-Reply-To: <{seed}.{max(index - 1, 0)}.reply@secretariat.example>")
    if rng.random() < ATTACHMENT_RATE:
        return _with_attachment(rng, headers, body_headers, body, index)
    return _join([*headers, *body_headers], body)


def generate_all(seed: int, count: int) -> Iterator[bytes]:
    for index in range(count):
        yield generate(seed, index)


def has_attachment(raw: bytes) -> bool:
    return b"Content-Type: multipart/mixed" in raw


def _address(rng: random.Random, language: Language) -> tuple[str, str]:
    name = rng.choice(language.names)
    local = f"{language.code}.{rng.randrange(10_000):04d}"
    return name, f"{local}@{rng.choice(DOMAINS)}"


def _received(rng: random.Random, when: datetime, sender: str) -> list[str]:
    relay = f"mx{rng.randrange(1, 5)}.{sender.split('@')[1]}"
    octets = ".".join(str(rng.randrange(1, 255)) for _ in range(3))
    return [
        f"Received: from {relay} (unknown [192.0.2.{rng.randrange(1, 255)}])\n"
        f"\tby mail.secretariat.example (Postfix) with ESMTPS id {rng.getrandbits(40):010X}\n"
        f"\tfor <committee@secretariat.example>; {format_datetime(when)}",
        f"Received: from [10.{octets}] by {relay} with ESMTPSA; {format_datetime(when)}",
    ]


def _subject(rng: random.Random, language: Language, index: int) -> str:
    template = rng.choice(language.subjects)
    subject = template.format(
        n=rng.choice(language.names), d=f"{rng.randint(1, 28)}/{rng.randint(1, 12)}", c=index
    )
    if subject.isascii():
        return subject
    return Header(subject, "utf-8", maxlinelen=76, header_name="Subject").encode()


def _text(rng: random.Random, language: Language, size: int) -> str:
    """Paragraphs of wrapped lines, at least ``size`` bytes of UTF-8."""
    lines: list[str] = [rng.choice(language.names) + ",", ""]
    used = 0
    while used < size:
        words = rng.choices(language.words, k=rng.randint(40, 120))
        line: list[str] = []
        width = 0
        for word in words:
            if width + len(word) > LINE_WIDTH and line:
                lines.append(" ".join(line))
                used += len(lines[-1].encode()) + 1
                line, width = [], 0
            line.append(word)
            width += len(word) + 1
        lines.append(" ".join(line) + ".")
        lines.append("")
        used += len(lines[-2].encode()) + 2
    lines += ["--", rng.choice(language.names)]
    return "\n".join(lines) + "\n"


def _text_part(rng: random.Random, text: str) -> tuple[list[str], bytes]:
    """Headers and encoded body of a text/plain part, in the encodings real mailers use."""
    data = text.encode()
    content_type = "Content-Type: text/plain; charset=utf-8; format=flowed"
    if text.isascii():
        return [content_type, "Content-Transfer-Encoding: 7bit"], data
    choice = rng.random()
    if choice < 0.5:
        return [content_type, "Content-Transfer-Encoding: 8bit"], data
    if choice < 0.85:
        return [content_type, "Content-Transfer-Encoding: quoted-printable"], quopri.encodestring(
            data
        )
    return [content_type, "Content-Transfer-Encoding: base64"], base64.encodebytes(data)


def _with_attachment(
    rng: random.Random, headers: list[str], part_headers: list[str], body: bytes, index: int
) -> bytes:
    boundary = f"=_mailflow_bench_{rng.getrandbits(64):016x}"
    attachment = base64.encodebytes(rng.randbytes(ATTACHMENT_BYTES))
    parts = b"".join(
        [
            b"This is a multi-part message in MIME format.\n\n",
            f"--{boundary}\n".encode(),
            _join(part_headers, body),
            f"\n--{boundary}\n".encode(),
            _join(
                [
                    f'Content-Type: application/pdf; name="evidence-{index}.pdf"',
                    f'Content-Disposition: attachment; filename="evidence-{index}.pdf"',
                    "Content-Transfer-Encoding: base64",
                ],
                attachment,
            ),
            f"--{boundary}--\n".encode(),
        ]
    )
    top = [*headers, f'Content-Type: multipart/mixed; boundary="{boundary}"']
    return _join(top, parts)


def _join(headers: list[str], body: bytes) -> bytes:
    return ("\n".join(headers) + "\n\n").encode() + body
