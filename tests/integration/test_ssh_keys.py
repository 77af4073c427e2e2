"""SSH keys on an account: the JSON API and the page, duplicates, ownership, the limit, audit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from corral.models.ssh_keys import SshKey
from corral.models.users import UserRole
from corral.ssh_keys.errors import MAX_KEYS_PER_ACCOUNT, SshKeyNotFound
from corral.ssh_keys.service import ssh_keys
from tests.integration.test_nodes_support import audit_events, error_code
from tests.support.admin import People, people_for
from tests.unit.test_ssh_key_parsing import keygen_fingerprint, make_key, public_line

API = "/api/v1/account/ssh-keys"
PAGE = "/account/ssh-keys"


@pytest.fixture
async def people(app: FastAPI, db: AsyncSession) -> AsyncIterator[People]:
    async with people_for(app, db) as people:
        yield people


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    return tmp_path


def new_key(directory: Path, key_type: str = "ed25519") -> tuple[str, str]:
    """A fresh public key line and its fingerprint as ``ssh-keygen -lf`` prints it."""
    private = make_key(directory, key_type)
    return public_line(private), keygen_fingerprint(Path(f"{private}.pub"))


async def key_count(db: AsyncSession) -> int:
    return int((await db.execute(select(func.count()).select_from(SshKey))).scalar_one())


async def test_a_customer_adds_lists_and_deletes_a_key(
    people: People, db: AsyncSession, key_dir: Path
) -> None:
    customer = await people.sign_in(UserRole.CUSTOMER)
    line, fingerprint = new_key(key_dir)

    added = await customer.post_json(API, {"name": " Laptop ", "public_key": line})

    assert added.status_code == 201, added.text
    body = added.json()
    assert (body["name"], body["key_type"], body["fingerprint"]) == ("Laptop", "ssh-ed25519", fingerprint)
    assert body["public_key"] == line.strip()
    listed = await customer.client.get(API)
    assert [item["fingerprint"] for item in listed.json()] == [fingerprint]

    deleted = await customer.client.delete(f"{API}/{body['id']}", headers=customer.headers())
    assert deleted.status_code == 204
    assert (await customer.client.get(API)).json() == []
    events = await audit_events(db, "ssh_key.")
    assert [event.action for event in events] == ["ssh_key.add", "ssh_key.delete"]
    assert events[0].actor_label == customer.user.email
    assert events[0].payload == {"name": "Laptop", "key_type": "ssh-ed25519", "fingerprint": fingerprint}


async def test_an_empty_name_takes_the_key_comment(people: People, key_dir: Path) -> None:
    customer = await people.sign_in(UserRole.CUSTOMER)
    line, _ = new_key(key_dir, "ecdsa")

    added = await customer.post_json(API, {"public_key": line})

    assert added.status_code == 201, added.text
    assert (added.json()["name"], added.json()["key_type"]) == ("me@laptop", "ecdsa-sha2-nistp256")
    bare = " ".join(new_key(key_dir)[0].split()[:2])  # no comment to fall back on
    refused = await customer.post_json(API, {"name": "", "public_key": bare})
    assert refused.status_code == 422
    assert error_code(refused.json()) == "invalid_ssh_key_name"


async def test_the_same_key_twice_is_a_conflict_naming_the_first(
    people: People, db: AsyncSession, key_dir: Path
) -> None:
    customer = await people.sign_in(UserRole.CUSTOMER)
    other = await people.sign_in(UserRole.CUSTOMER)
    line, _ = new_key(key_dir)
    assert (await customer.post_json(API, {"name": "Laptop", "public_key": line})).status_code == 201

    # The same key with another comment and spacing is still the same key.
    again = await customer.post_json(
        API, {"name": "Again", "public_key": "  " + line.replace("me@laptop", "x")}
    )

    assert again.status_code == 409
    assert error_code(again.json()) == "ssh_key_duplicate"
    assert again.json()["message"] == "This key is already on your account as “Laptop”."
    # Another person may hold the same public key on their own account.
    assert (await other.post_json(API, {"name": "Shared", "public_key": line})).status_code == 201
    assert await key_count(db) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ssh-ed25519 AAA", "not valid base64"),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
            "-----END OPENSSH PRIVATE KEY-----\n",
            "That is a private key — paste the .pub file",
        ),
        ("hello", "must start with its type"),
    ],
)
async def test_bad_keys_are_refused_with_the_reason(
    people: People, db: AsyncSession, text: str, expected: str
) -> None:
    customer = await people.sign_in(UserRole.CUSTOMER)

    response = await customer.post_json(API, {"name": "Bad", "public_key": text})

    assert response.status_code == 422
    assert error_code(response.json()) == "invalid_ssh_key"
    assert expected in response.json()["message"]
    assert response.json()["details"]["field"] == "public_key"
    assert await key_count(db) == 0
    assert await audit_events(db, "ssh_key.") == []


async def test_a_short_rsa_key_and_a_missing_field_are_422(people: People, key_dir: Path) -> None:
    customer = await people.sign_in(UserRole.CUSTOMER)
    short = public_line(make_key(key_dir, "rsa", 1024))

    rsa = await customer.post_json(API, {"name": "Old", "public_key": short})
    missing = await customer.post_json(API, {"name": "Nothing"})

    assert rsa.status_code == 422
    assert "at least 2048 bits" in rsa.json()["message"]
    assert missing.status_code == 422
    assert error_code(missing.json()) == "validation_failed"


async def test_another_persons_key_is_not_found(people: People, db: AsyncSession, key_dir: Path) -> None:
    owner = await people.sign_in(UserRole.CUSTOMER)
    stranger = await people.sign_in(UserRole.CUSTOMER)
    key_id = (await owner.post_json(API, {"name": "Mine", "public_key": new_key(key_dir)[0]})).json()["id"]

    refused = await stranger.client.delete(f"{API}/{key_id}", headers=stranger.headers())
    page_refused = await stranger.post_htmx(f"{PAGE}/{key_id}/delete")

    assert refused.status_code == 404
    assert error_code(refused.json()) == "ssh_key_not_found"
    assert page_refused.status_code == 404
    assert (await stranger.client.get(API)).json() == []
    assert [item["id"] for item in (await owner.client.get(API)).json()] == [key_id]


async def test_owned_returns_the_chosen_keys_or_refuses_all(
    people: People, db: AsyncSession, key_dir: Path
) -> None:
    owner = await people.sign_in(UserRole.CUSTOMER)
    stranger = await people.sign_in(UserRole.CUSTOMER)
    first = (await owner.post_json(API, {"name": "One", "public_key": new_key(key_dir)[0]})).json()["id"]
    second = (await owner.post_json(API, {"name": "Two", "public_key": new_key(key_dir)[0]})).json()["id"]
    theirs = (await stranger.post_json(API, {"name": "X", "public_key": new_key(key_dir)[0]})).json()["id"]

    chosen = await ssh_keys.owned(db, owner.user.id, [second, first, second])

    assert [key.id for key in chosen] == [second, first]
    assert await ssh_keys.owned(db, owner.user.id, []) == []
    for ids in ([first, theirs], [first, 2**63], [0]):
        with pytest.raises(SshKeyNotFound):
            await ssh_keys.owned(db, owner.user.id, ids)


async def test_an_account_holds_at_most_fifty_keys(people: People, db: AsyncSession, key_dir: Path) -> None:
    customer = await people.sign_in(UserRole.CUSTOMER)
    db.add_all(
        SshKey(
            user_id=customer.user.id,
            name=f"key {number}",
            public_key="ssh-ed25519 AAAA",
            key_type="ssh-ed25519",
            fingerprint=f"SHA256:filler{number}",
        )
        for number in range(MAX_KEYS_PER_ACCOUNT)
    )
    await db.flush()

    response = await customer.post_json(API, {"name": "One more", "public_key": new_key(key_dir)[0]})

    assert response.status_code == 409
    assert error_code(response.json()) == "too_many_ssh_keys"
    assert await key_count(db) == MAX_KEYS_PER_ACCOUNT


async def test_who_may_use_the_key_list(people: People) -> None:
    anonymous = await people.client()
    assert (await anonymous.get(API)).status_code == 401
    page = await anonymous.get(PAGE)
    assert page.status_code == 303
    assert page.headers["location"].startswith("/login?next=")
    # Staff keep their own keys too: it is part of every account.
    support = await people.sign_in(UserRole.SUPPORT)
    assert (await support.client.get(API)).status_code == 200


async def test_the_page_adds_refuses_inline_and_deletes(
    people: People, db: AsyncSession, key_dir: Path
) -> None:
    customer = await people.sign_in(UserRole.CUSTOMER)
    line, fingerprint = new_key(key_dir)
    account = await customer.client.get("/account")
    assert f'href="{PAGE}"' in account.text

    empty = await customer.client.get(PAGE)
    assert empty.status_code == 200
    assert "No SSH keys yet" in empty.text

    private = make_key(key_dir, "ed25519").read_text()
    bad = await customer.post_form(PAGE, {"name": "Laptop", "public_key": private})
    assert bad.status_code == 422
    assert 'data-field-error="public_key"' in bad.text
    assert "That is a private key — paste the .pub file" in bad.text
    assert 'value="Laptop"' in bad.text  # what was typed comes back

    added = await customer.post_form(PAGE, {"name": "Laptop", "public_key": line})
    assert added.status_code == 303
    assert added.headers["location"] == f"{PAGE}?done=added"
    listed = await customer.client.get(added.headers["location"])
    assert fingerprint in listed.text
    assert "SSH key added." in listed.text
    assert "hx-confirm=" in listed.text

    duplicate = await customer.post_form(PAGE, {"name": "Again", "public_key": line})
    assert duplicate.status_code == 409
    assert "already on your account as “Laptop”" in duplicate.text

    key_id = (await customer.client.get(API)).json()[0]["id"]
    deleted = await customer.post_htmx(f"{PAGE}/{key_id}/delete")
    assert deleted.headers["HX-Redirect"] == f"{PAGE}?done=deleted"
    assert await key_count(db) == 0
    assert [event.action for event in await audit_events(db, "ssh_key.")] == ["ssh_key.add", "ssh_key.delete"]
