"""The rules a new password must meet, and the checks on names and addresses typed into forms."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.users.passwords import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    common_passwords,
    is_common,
    password_problem,
)
from corral.users.validation import clean_email, clean_name, new_password_problems

GOOD = "violet anchor drifts north"


def test_a_long_uncommon_password_is_accepted() -> None:
    assert password_problem(GOOD, email="ada@example.com") is None


def test_length_is_counted_in_characters_from_12_to_128() -> None:
    assert password_problem("k" * 4 + "Q7#v@x1", email=None) == "Use at least 12 characters."  # 11
    assert password_problem("vk3#Qp9!xZ2m", email=None) is None  # exactly 12
    assert password_problem("é" * 11 + "z", email=None) is None  # 12 characters, 24 bytes
    assert password_problem("a" * 11, email=None) is not None
    almost = "Zq8!" * 32  # 128
    assert len(almost) == MAX_PASSWORD_LENGTH
    assert password_problem(almost, email=None) is None
    assert password_problem(almost + "x", email=None) == "Use at most 128 characters."


def test_the_bundled_list_is_large_and_lower_cased() -> None:
    listed = common_passwords()
    assert len(listed) >= 10_000
    assert "password" in listed
    assert all(entry == entry.lower() for entry in listed)


@pytest.mark.parametrize(
    "password",
    [
        "qwertyuiop123",  # on the list as it is
        "1qaz2wsx3edc",
        "QWERTY123456",  # case does not matter
        "finalfantasy",
        "sunshine2024!",  # a common word with digits and symbols added at the end
        "Password12345",
        "iloveyou!!!!",
    ],
)
def test_common_passwords_are_refused(password: str) -> None:
    assert is_common(password)
    assert password_problem(password, email=None) == (
        "This password is on a list of commonly used passwords. Choose another."
    )


def test_decoration_on_a_tiny_base_is_not_mistaken_for_a_common_password() -> None:
    # "ab" is not worth matching: what is left after the digits says nothing.
    assert not is_common("ab1234567890")


@pytest.mark.parametrize(
    ("email", "password", "refused"),
    [
        ("margaret@example.com", "my name is Margaret, ok?", True),
        ("margaret@example.com", "MARGARETisverysecure", True),
        ("margaret@example.com", "violet anchor drifts", False),
        ("al@example.com", "al is my nickname ok", False),  # local parts under 3 characters are ignored
        ("bob@example.com", "bobsleigh in winter", True),
        (None, "margaret is my name", False),
    ],
)
def test_the_email_name_may_not_be_part_of_the_password(
    email: str | None, password: str, refused: bool
) -> None:
    problem = password_problem(password, email=email)
    if refused:
        assert problem == "The password must not contain the name part of your email address."
    else:
        assert problem is None


def test_confirmation_must_match_and_is_only_checked_for_a_valid_password() -> None:
    assert new_password_problems(GOOD, GOOD, email=None) == {}
    assert new_password_problems(GOOD, GOOD + "x", email=None) == {
        "password_confirm": "The two passwords do not match."
    }
    assert set(new_password_problems("short", "other", email=None)) == {"password"}


@given(st.text(min_size=MIN_PASSWORD_LENGTH, max_size=MAX_PASSWORD_LENGTH))
def test_any_password_gets_an_answer_without_error(password: str) -> None:
    problem = password_problem(password, email="someone@example.com")
    assert problem is None or isinstance(problem, str)


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ("  ada@example.com ", None),
        ("", "Enter your email address."),
        ("ada", "Enter an email address such as name@example.com."),
        ("ada@localhost", "Enter an email address such as name@example.com."),
        ("ada@example.com\nBcc: eve@example.com", "Enter an email address such as name@example.com."),
        ("a b@example.com", "Enter an email address such as name@example.com."),
        ("a" * 250 + "@example.com", "Use an address of at most 254 characters."),
    ],
)
def test_email_addresses(typed: str, problem: str | None) -> None:
    cleaned, found = clean_email(typed)
    assert found == problem
    if problem is None:
        assert cleaned == typed.strip()


@pytest.mark.parametrize(
    ("typed", "cleaned", "problem"),
    [
        ("  Ada   Lovelace ", "Ada Lovelace", None),
        ("", "", "Enter your name."),
        ("   ", "", "Enter your name."),
        ("x" * 201, "x" * 201, "Use at most 200 characters."),
        ("Ada\u202eecalevol", "Ada\u202eecalevol", "Use letters, digits, spaces and punctuation only."),
    ],
)
def test_names(typed: str, cleaned: str, problem: str | None) -> None:
    assert clean_name(typed) == (cleaned, problem)
