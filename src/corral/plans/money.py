"""Prices as integer minor units, typed and shown as decimals. Never a float: ``Decimal`` only.

ISO 4217 currencies differ in how many minor digits they have (USD 2, JPY 0, KWD 3). The table
below lists the active codes that are not the usual 2; every other known code has 2.
"""

from __future__ import annotations

import re
from decimal import Context, Decimal, InvalidOperation

# Kept as data rather than a dependency: ISO 4217 changes a few times a decade.
_CODES = """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP
    BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP
    GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR
    KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK
    MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR
    SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS
    UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWL
"""
ISO_4217: frozenset[str] = frozenset(_CODES.split())

# Minor-unit exponents that differ from the default of 2.
_ZERO_DIGITS = ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV")
_ZERO_DIGITS_CFA = ("XAF", "XOF", "XPF")
_THREE_DIGITS = ("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND")
MINOR_DIGITS: dict[str, int] = {
    **dict.fromkeys(_ZERO_DIGITS, 0),
    **dict.fromkeys(_ZERO_DIGITS_CFA, 0),
    **dict.fromkeys(_THREE_DIGITS, 3),
}
DEFAULT_MINOR_DIGITS = 2
# The largest amount a BIGINT of minor units holds.
MAX_MINOR = 2**63 - 1


# ASCII digits with at most one decimal point; no sign, exponent, spaces or separators.
_PLAIN = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")
_MAX_WHOLE_DIGITS = 15
_EXACT = Context(prec=200)


class PriceError(ValueError):
    """A typed price that cannot be stored; the message is meant for the person who typed it."""


def minor_digits(currency: str) -> int:
    return MINOR_DIGITS.get(currency.upper(), DEFAULT_MINOR_DIGITS)


def parse_price(text: str, currency: str) -> int:
    """``"12.50"`` in USD -> ``1250``; ``"1200"`` in JPY -> ``1200``. Refuses negative amounts,
    more decimal places than the currency has, exponents and anything that is not a plain number."""
    cleaned = text.strip()
    if cleaned.startswith("-"):
        raise PriceError("The price cannot be negative.")
    if not _PLAIN.fullmatch(cleaned):
        raise PriceError("Type the price as a plain number, e.g. 12.50.")
    if len(cleaned.partition(".")[0].lstrip("0")) > _MAX_WHOLE_DIGITS:
        raise PriceError("That price is too large.")
    try:
        amount = Decimal(cleaned)
    except InvalidOperation as error:  # pragma: no cover - the pattern only lets plain numbers through
        raise PriceError("Type the price as a plain number, e.g. 12.50.") from error
    digits = minor_digits(currency)
    # Exact arithmetic: the default context would round a long amount to 28 digits.
    minor = amount.scaleb(digits, context=_EXACT)
    if minor != minor.to_integral_value():
        if digits == 0:
            raise PriceError(f"{currency} prices are whole numbers.")
        raise PriceError(f"{currency} prices have at most {digits} decimal places.")
    if minor > MAX_MINOR:
        raise PriceError("That price is too large.")
    return int(minor)


def price_amount(price_minor: int, currency: str) -> str:
    """The decimal amount as text with exactly the currency's digits: ``1250`` USD -> ``"12.50"``."""
    digits = minor_digits(currency)
    amount = Decimal(price_minor).scaleb(-digits)
    return f"{amount:.{digits}f}"


def format_price(price_minor: int, currency: str) -> str:
    """For people: ``"12.50 USD"``, ``"1200 JPY"``."""
    return f"{price_amount(price_minor, currency)} {currency}"
