"""Property tests of the personal-data masks (issue 27, item 14): IBANs, grouped card numbers, US SSNs,
international phone numbers and emails split by invisible characters are masked; the numbers financial
text is made of (prices, percentages, dates, times, share counts, years, tickers) are not.

Valid IBANs and cards are built here with their check digits, so a test can also corrupt one digit: the
mod-97 and Luhn checks catch every single-digit error, so a corrupted one must not be masked as such.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from streams.enrich import mask_pii

INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]
WORDS = ["up", "down", "at", "on", "vol", "EPS", "beat", "guides", "closes", "shares", "Q3", "FY2025", "to", "vs"]
words = st.sampled_from(WORDS)

# A sample of the IBAN registry, written out here so the test does not read the table it checks.
IBAN_LENGTHS = {"DE": 22, "GB": 22, "FR": 27, "NO": 15, "NL": 18, "MT": 31, "RU": 33, "BR": 29, "CH": 21, "ES": 24,
                "BE": 16}


def iban_check_digits(country: str, bban: str) -> str:
    """ISO 13616: the check digits make the rearranged number 1 modulo 97."""
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{98 - int(numeric) % 97:02d}"


@st.composite
def ibans(draw: st.DrawFn) -> str:
    country = draw(st.sampled_from(sorted(IBAN_LENGTHS)))
    size = IBAN_LENGTHS[country] - 4
    bank = draw(st.text(string.ascii_uppercase, min_size=4, max_size=4)) if country in ("GB", "NL", "MT") else ""
    bban = bank + draw(st.text(string.digits, min_size=size - len(bank), max_size=size - len(bank)))
    return country + iban_check_digits(country, bban) + bban


def grouped(compact: str) -> str:
    return " ".join(compact[i:i + 4] for i in range(0, len(compact), 4))


def corrupt(number: str, draw: Callable[[st.SearchStrategy[Any]], Any]) -> str:
    """Change one digit (never the country code) to another digit."""
    spots = [i for i, c in enumerate(number) if c.isdigit()]
    i = draw(st.sampled_from(spots))
    return number[:i] + draw(st.sampled_from([d for d in string.digits if d != number[i]])) + number[i + 1:]


@given(iban=ibans(), spaced=st.booleans(), lower=st.booleans(), before=words, after=words)
@example(iban="DE89370400440532013000", spaced=True, lower=False, before="to", after="now")
@example(iban="GB82WEST12345698765432", spaced=True, lower=False, before="pay", after="SELL")
def test_valid_ibans_are_masked(iban: str, spaced: bool, lower: bool, before: str, after: str) -> None:
    shown = grouped(iban) if spaced else iban
    shown = shown.lower() if lower else shown
    assert mask_pii(f"{before} {shown} {after}") == f"{before} <iban> {after}"


@given(data=st.data(), iban=ibans(), spaced=st.booleans())
def test_an_iban_with_a_wrong_digit_is_not_masked_as_one(data: st.DataObject, iban: str, spaced: bool) -> None:
    bad = corrupt(iban, data.draw)
    assert "<iban>" not in mask_pii(f"to {grouped(bad) if spaced else bad} now")


@given(st.from_regex(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}", fullmatch=True))
@example("US10YEARNOTESALE1")  # not an IBAN country
def test_iban_shaped_strings_are_masked_only_with_a_registry_length_and_checksum(shaped: str) -> None:
    country, digits, bban = shaped[:2], shaped[2:4], shaped[4:]
    valid = (len(shaped) == IBAN_LENGTHS.get(country) and iban_check_digits(country, bban) == digits)
    if country in IBAN_LENGTHS:
        assert ("<iban>" in mask_pii(f"to {shaped} now")) == valid


CARD_LAYOUTS = {16: (4, 4, 4, 4), 15: (4, 6, 5), 14: (4, 6, 4), 19: (4, 4, 4, 4, 3)}
CARD_PREFIXES = {16: ["4", "51", "55", "2221", "2720", "6011", "35"], 15: ["34", "37"], 14: ["36"], 19: ["4", "62"]}


def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str(-total % 10)


@st.composite
def cards(draw: st.DrawFn) -> tuple[str, int]:
    size = draw(st.sampled_from(sorted(CARD_LAYOUTS)))
    prefix = draw(st.sampled_from(CARD_PREFIXES[size]))
    body = prefix + draw(st.text(string.digits, min_size=size - 1 - len(prefix), max_size=size - 1 - len(prefix)))
    return body + luhn_digit(body), size


def layout(number: str, size: int, sep: str) -> str:
    parts, at = [], 0
    for width in CARD_LAYOUTS[size]:
        parts.append(number[at:at + width])
        at += width
    return sep.join(parts)


@given(card=cards(), sep=st.sampled_from([" ", "-"]), before=words, after=words)
@example(card=("4111111111111111", 16), sep="-", before="card", after="exp")
@example(card=("378282246310005", 15), sep=" ", before="amex", after="thanks")
def test_grouped_card_numbers_are_masked(card: tuple[str, int], sep: str, before: str, after: str) -> None:
    shown = layout(*card, sep)
    assert mask_pii(f"{before} {shown} {after}") == f"{before} <card> {after}"


@given(data=st.data(), card=cards(), sep=st.sampled_from([" ", "-"]))
def test_a_card_number_with_a_wrong_digit_is_not_masked_as_one(data: st.DataObject, card: tuple[str, int],
                                                                sep: str) -> None:
    bad = corrupt(card[0], data.draw)
    # a 19-digit number whose first 16 digits happen to make a card holds one (as a card and its CVV would)
    assume(card[1] != 19 or luhn_digit(bad[:15]) != bad[15])
    assert "<card>" not in mask_pii(f"card {layout(bad, card[1], sep)} exp")


def test_a_card_followed_by_its_expiry_and_an_ungrouped_card_stay_masked() -> None:
    assert mask_pii("4111 1111 1111 1111 12/26") == "<card> 12/26"
    assert mask_pii("card 4111111111111111") == "card <number>"  # one run of digits: the account mask, as before


areas = st.integers(1, 899).filter(lambda a: a != 666)


@given(area=areas, group=st.integers(1, 99), serial=st.integers(1, 9999), before=words, after=words)
def test_ssns_are_masked(area: int, group: int, serial: int, before: str, after: str) -> None:
    assert mask_pii(f"{before} {area:03d}-{group:02d}-{serial:04d} {after}") == f"{before} <ssn> {after}"


@given(area=st.integers(0, 999), group=st.integers(0, 99), serial=st.integers(0, 9999))
def test_impossible_ssns_are_kept(area: int, group: int, serial: int) -> None:
    assume(area in (0, 666) or area >= 900 or group == 0 or serial == 0)
    text = f"ref {area:03d}-{group:02d}-{serial:04d} ok"
    assert mask_pii(text) == text


ISO_DATE = re.compile(r"(?:19|20)\d\d-[01]\d-[0-3]\d")
COUNTRY_CODES = ["1", "7", "20", "33", "39", "44", "49", "61", "81", "86", "91", "234", "353", "380", "971"]


@st.composite
def phones(draw: st.DrawFn) -> str:
    code = draw(st.sampled_from(COUNTRY_CODES))
    digits = draw(st.text(string.digits, min_size=7, max_size=15 - len(code)))
    sep = draw(st.sampled_from([" ", "-", ".", ""]))
    groups, at = [], 0
    while at < len(digits):
        width = draw(st.integers(1, 4))
        groups.append(digits[at:at + width])
        at += width
    if draw(st.booleans()):
        groups[0] = f"({groups[0]})"
    after_code = draw(st.sampled_from([" ", sep]))
    return f"+{code}{after_code}{sep.join(groups)}"


@given(phone=phones(), before=words, after=words)
@example(phone="+44 20 7946 0958", before="call", after="today")
@example(phone="+44 (0)20 7946 0958", before="call", after="today")
@example(phone="+33 1.23.45.67.89", before="call", after="today")
@example(phone="+4915123456789", before="call", after="today")
def test_international_phone_numbers_are_masked(phone: str, before: str, after: str) -> None:
    # a run of dashed groups that reads as an ISO date (+44-2026-12-07...) is taken for a date, on purpose
    assume(not ISO_DATE.search(phone))
    assert mask_pii(f"{before} {phone} {after}") == f"{before} <phone> {after}"


emails = st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,15}@[a-z0-9-]{1,12}\.[a-z]{2,6}", fullmatch=True)


@given(email=emails, spots=st.lists(st.tuples(st.integers(0, 40), st.sampled_from(INVISIBLE)), min_size=1))
@example(email="jane.doe@example.com", spots=[(4, "\u200b"), (8, "\ufeff"), (9, "\u2060")])
def test_emails_split_by_invisible_characters_are_masked(email: str, spots: list[tuple[int, str]]) -> None:
    laced = email
    for at, char in spots:
        laced = laced[:at] + char + laced[at:]
    # invisible characters are removed from the whole text, so the result carries none of them
    assert mask_pii(f"mail {laced} now") == "mail <email> now"


@given(st.text(st.characters(codec="utf-8").filter(lambda c: c not in INVISIBLE), max_size=80), st.data())
def test_invisible_characters_change_nothing_but_themselves(text: str, data: st.DataObject) -> None:
    laced = text
    for char in data.draw(st.lists(st.sampled_from(INVISIBLE), max_size=5)):
        at = data.draw(st.integers(0, len(laced)))
        laced = laced[:at] + char + laced[at:]
    assert mask_pii(laced) == mask_pii(text)


def test_invisible_characters_cannot_hide_the_other_kinds() -> None:
    text = "DE89\u200b 3704 0044 0532 0130 00, 4111\u200c-1111-1111-1111, 123-\u200d45-6789, +44 20\u2060 7946 0958"
    assert mask_pii(text) == "<iban>, <card>, <ssn>, <phone>"


def money(cents: int) -> str:
    return f"${cents // 100:,}.{cents % 100:02d}"


market_numbers = st.one_of(
    st.integers(0, 10**9).map(money),  # $123.45, $1,234,567.00
    st.tuples(st.sampled_from(["", "+", "-"]), st.integers(0, 999), st.integers(0, 99))
    .map(lambda t: f"{t[0]}{t[1]}.{t[2]:02d}%"),
    st.tuples(st.sampled_from(["+", "-"]), st.integers(0, 9999), st.integers(0, 99))
    .map(lambda t: f"{t[0]}{t[1]}.{t[2]:02d}"),  # a price change
    st.integers(0, 10**12).map(lambda n: f"{n:,}"),  # share counts
    st.integers(0, 9_999_999).map(str),  # a bare number; eight digits and more read as an account, as before
    st.integers(1900, 2100).map(str),
    st.dates().map(lambda d: d.isoformat()),
    st.dates().map(lambda d: d.strftime("%m/%d/%Y")),
    st.dates().map(lambda d: d.strftime("%d.%m.%Y")),
    st.times().map(lambda t: t.strftime("%H:%M")),
    st.times().map(lambda t: t.isoformat(timespec="seconds")),
    st.from_regex(r"\$?[A-Z]{1,5}(\.[A-Z])?", fullmatch=True),  # tickers and cashtags
    st.sampled_from(["10-K", "S&P 500", "52-week", "3x", "1.2bn", "$3B", "2:1", "Q3 2026", "FY2025", "H1"]),
)


@given(st.lists(st.tuples(words, market_numbers), min_size=1, max_size=8))
@example([("closes", "$189.20"), ("up", "+3.50%"), ("on", "2026-12-07"), ("at", "14:05"), ("vol", "1,000,000")])
def test_financial_numbers_are_not_masked(pairs: list[tuple[str, str]]) -> None:
    text = " ".join(f"{word} {number}" for word, number in pairs)
    assert mask_pii(text) == text


@pytest.mark.parametrize("text", [
    "$AAPL +1.25 2026-12-07 14:05",  # a signed price change then a date, not "+1 ..." a phone
    "EUR/USD +0.25 07.12.2026",
    "Dow +312 to 38,500 on 2026-12-07",
    "Nasdaq +1.5% 2026 2027 2028 2029",
    "years 2024 2025 2026 2027 and 1999-2000-2001-2002",  # card-shaped, but no card starts with 1 or 20
    "TSLA US10 YEAR NOTE SALE BRK.B DE30 DAX40",  # IBAN-shaped words: no IBAN country or length
    "prices 123.45 678.90 and 1,234.56, ratio 3-2-1",
])
def test_market_text_examples_are_kept(text: str) -> None:
    assert mask_pii(text) == text
