"""Masks for personal data in chat text, applied to every chat message on the hot path.

Financial text is full of numbers, so each mask that a price, date or share count could trip also checks
what makes the number real: an IBAN its registry length and mod-97 digits, a card its Luhn digit and issuer
range, an SSN the areas and groups never issued. Every pattern is compiled once, at import.
"""

from __future__ import annotations

import re

import pydantic_core

# Invisible format characters (zero-width space/joiners, word joiner, BOM, soft hyphen, invisible operators)
# that split an address or number without changing how it reads. They are removed from the whole text, so
# the masked text has none: emoji joined by U+200D fall apart into their parts, which the model does not need.
_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200d\u2060-\u2064\ufeff]")

_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
# A country code, two check digits, then the account in groups of four (spaced or not); the registry length
# then says where it ends, so a word the groups swallowed ("... 0130 00 SELL") is given back.
_IBAN = re.compile(r"(?<![0-9A-Za-z])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]{4}){2,7}(?: ?[A-Za-z0-9]{1,4})?")
# Grouped the way cards are printed, one separator throughout: 4-6-4 or 4-6-5 (Diners, Amex), 4-4-4-4 with an
# optional short fifth group (19-digit cards). Ungrouped cards are one run of digits: the account mask has them.
_CARD = re.compile(r"(?<![\w.,-])\d{4}(?P<sep>[ -])(?:\d{6}(?P=sep)\d{4,5}|\d{4}(?P=sep)\d{4}(?P=sep)\d{4}"
                   r"(?P<tail>(?P=sep)\d{1,3})?)(?!\w|[.,-]\d)")
# Area 000, 666 and 900-999, group 00 and serial 0000 are never issued.
_SSN = re.compile(r"(?<![\w-])(?!000|666|9)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])")
# "+", a country code, then 7-14 digits, each maybe after a space, dash or dot and maybe in parentheses.
_INTL_PHONE = re.compile(r"(?<![\w+])\+[1-9]\d{0,2}(?:[ .-]?\(?\d\)?){7,14}(?![\d%]|[.,]\d)")
_PHONE_SEPARATOR = re.compile(r"[ .-]")
_ISO_DATE = re.compile(r"(?:19|20)\d\d-[01]\d-[0-3]\d")
_PHONE = re.compile(r"(?<![\w.])(?:\+\d{1,3}[\s.-]?)?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]\d{4}(?![\w.])")
_ACCOUNT = re.compile(r"\b\d{8,}\b")
_HANDLE = re.compile(r"(?<![\w@])@\w{2,}")
_DIGIT = re.compile(r"\d")

# IBAN length by country, from the SWIFT IBAN registry (as python-stdnum's iban.dat carries it).
_IBAN_LENGTH = {country: size for size, countries in {
    15: "NO", 16: "BE", 18: "DK FI FK FO GL NL SD", 19: "MK SI", 20: "AT BA EE KZ LT LU MN XK", 21: "CH HR LI LV",
    22: "BG BH CR DE GB GE IE ME RS VA", 23: "AE GI IL IQ OM SO TL", 24: "AD CZ ES MD PK RO SA SE SK TN VG",
    25: "LY PT ST", 26: "IS TR", 27: "BI DJ FR GR IT MC MR SM", 28: "AL AZ BY CY DO GT HN HU LB NI PL SV",
    29: "BR EG PS QA UA", 30: "JO KW MU YE", 31: "MT SC", 32: "LC", 33: "RU",
}.items() for country in countries.split()}


def _iban_valid(iban: str) -> bool:
    """ISO 13616: check digits 02-98, and the number with its first four characters moved to the end, letters
    read as 10-35, is 1 modulo 97."""
    if not "02" <= iban[2:4] <= "98":
        return False
    return int("".join(str(int(c, 36)) for c in iban[4:] + iban[:4])) % 97 == 1


def _mask_iban(match: re.Match[str]) -> str:
    found = match.group()
    size = _IBAN_LENGTH.get(found[:2].upper())
    if size is None:
        return found
    end = _past_nth_character(found, size)  # the IBAN ends there; what follows must be a separate word
    if end is None or found[end:end + 1] not in ("", " ") or not _iban_valid(found[:end].replace(" ", "").upper()):
        return found
    return "<iban>" + found[end:]


def _past_nth_character(found: str, n: int) -> int | None:
    """The index just past the n-th character that is not a space, or None when there are fewer."""
    seen = 0
    for i, char in enumerate(found):
        if char != " ":
            seen += 1
            if seen == n:
                return i + 1
    return None


def _luhn_valid(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = (ord(char) - 48) * (1 + i % 2)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _card_valid(digits: str) -> bool:
    """Luhn, and an issuer range cards use (American Express, Diners, JCB, Visa, Mastercard, Discover,
    UnionPay, Maestro: first digit 3-6, or Mastercard's 2221-2720), which keeps runs of years out."""
    return (digits[0] in "3456" or "2221" <= digits[:4] <= "2720") and _luhn_valid(digits)


def _mask_card(match: re.Match[str]) -> str:
    found = match.group()
    if _card_valid(found.replace(match["sep"], "")):
        return "<card>"
    tail = match["tail"]  # a 16-digit card then a short number (its CVV, an expiry month) is still a card
    if tail and _card_valid(found[:-len(tail)].replace(match["sep"], "")):
        return "<card>" + tail
    return found


def _mask_intl_phone(match: re.Match[str]) -> str:
    found = match.group()
    separators = _PHONE_SEPARATOR.findall(found)
    if separators[:1] == [" "]:
        separators = separators[1:]  # "+33 1.23.45.67.89": a space after the country code is common
    # A dot among other separators is a decimal point ("+1.25 2026-12-07": a price change, then a date).
    if ("." in separators and len(set(separators)) > 1) or _ISO_DATE.search(found):
        return found
    return "<phone>"


def mask_pii(text: str) -> str:
    """Mask emails, IBANs, card numbers, SSNs, phone and account-like numbers and @handles in chat text;
    invisible characters are removed first so they cannot split one of them."""
    if not text.isascii():  # all the invisible characters are outside ASCII: most texts skip the scan
        text = _INVISIBLE.sub("", text)
    has_at = "@" in text
    if has_at:
        text = _EMAIL.sub("<email>", text)
    if _DIGIT.search(text):
        text = _IBAN.sub(_mask_iban, text)
        text = _CARD.sub(_mask_card, text)
        if "+" in text:  # before SSNs: a number's last groups can read as one ("+1 001-01-0001")
            text = _INTL_PHONE.sub(_mask_intl_phone, text)
        text = _SSN.sub("<ssn>", text)
        text = _PHONE.sub("<phone>", text)
        text = _ACCOUNT.sub("<number>", text)
    return _HANDLE.sub("@<user>", text) if has_at else text


_PERSON_FIELDS = ("author", "channel")  # who wrote it, and where: never copied into a dead letter


def _prefix_text(raw: bytes | str, limit: int) -> str | None:
    """The first ``limit`` bytes (characters of a str) as text; a character cut in two at the end is dropped."""
    if isinstance(raw, str):
        return raw[:limit]
    cut = raw[:limit]
    try:
        return cut.decode("utf-8")
    except UnicodeDecodeError as exc:
        if len(raw) > limit and exc.start >= len(cut) - 3 and exc.reason == "unexpected end of data":
            return cut[:exc.start].decode("utf-8")
        return None


def mask_payload(raw: bytes | str | None, limit: int = 1 << 30) -> str | None:
    """A dead letter's copy of an input record, with its personal data masked; the original stays at its topic,
    partition and offset. A JSON object keeps its id, times and tickers (an operator finds the record by them);
    its text is masked and its author and channel withheld. Anything else is masked as text; bytes that are
    not UTF-8 are withheld (they cannot be masked). Only the first ``limit`` bytes are read and kept: masking
    costs time in proportion, and a hostile producer chooses the size."""
    if raw is None:
        return None
    text = _prefix_text(raw, limit)
    if text is None:
        return None
    try:  # pydantic-core's parser: deep nesting is a ValueError, not a RecursionError
        obj = pydantic_core.from_json(text)
    except ValueError:
        return mask_pii(text)
    if not isinstance(obj, dict):
        return mask_pii(text)
    for name in _PERSON_FIELDS:
        if name in obj:
            obj[name] = "<withheld>"
    if isinstance(obj.get("text"), str):
        obj["text"] = mask_pii(obj["text"])
    try:
        return pydantic_core.to_json(obj).decode()
    except ValueError:  # a value it cannot write back (nesting past its limit): the masked text instead
        return mask_pii(text)
