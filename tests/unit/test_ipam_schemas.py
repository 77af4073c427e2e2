"""Pool input rules and address arithmetic, without a database."""

from __future__ import annotations

from ipaddress import ip_address, ip_network
from typing import Any

import pytest
from pydantic import ValidationError

from corral.ipam.schemas import (
    AddressFilter,
    IpPoolCreate,
    IpPoolUpdate,
    Utilisation,
    count_label,
    split_list,
    usable_bounds,
    usable_count,
)

VALID: dict[str, Any] = {
    "name": "syd1-v4",
    "network": "203.0.113.0/24",
    "gateway": "203.0.113.1",
    "dns_servers": ["1.1.1.1"],
    "location_id": 1,
}


def _errors(**fields: Any) -> dict[str, str]:
    with pytest.raises(ValidationError) as refused:
        IpPoolCreate.model_validate({**VALID, **fields})
    return {str(error["loc"][0]): error["msg"] for error in refused.value.errors()}


@pytest.mark.parametrize(
    ("network", "first", "last", "count"),
    [
        ("203.0.113.0/24", "203.0.113.1", "203.0.113.254", 254),
        ("203.0.113.0/29", "203.0.113.1", "203.0.113.6", 6),
        ("203.0.113.0/31", "203.0.113.0", "203.0.113.1", 2),
        ("203.0.113.5/32", "203.0.113.5", "203.0.113.5", 1),
        ("2001:db8::/64", "2001:db8::1", "2001:db8::ffff:ffff:ffff:ffff", 2**64 - 1),
        ("2001:db8::/127", "2001:db8::", "2001:db8::1", 2),
    ],
)
def test_usable_addresses(network: str, first: str, last: str, count: int) -> None:
    parsed = ip_network(network)
    assert usable_bounds(parsed) == (ip_address(first), ip_address(last))
    assert usable_count(parsed) == count


def test_a_valid_pool_is_normalised() -> None:
    pool = IpPoolCreate.model_validate(
        {
            **VALID,
            "name": "  syd1-v4  ",
            "dns_servers": ["1.1.1.1", " 2606:4700:4700::1111", "1.1.1.1"],
            "reserved": ["203.0.113.9", "203.0.113.1", "203.0.113.3", "203.0.113.9"],
            "version": 4,
        }
    )
    assert pool.name == "syd1-v4"
    assert pool.network == ip_network("203.0.113.0/24")
    assert pool.ip_version == 4
    assert pool.dns_servers == [ip_address("1.1.1.1"), ip_address("2606:4700:4700::1111")]
    # Sorted, deduplicated, and without the gateway, which is reserved anyway.
    assert pool.reserved == [ip_address("203.0.113.3"), ip_address("203.0.113.9")]


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        (
            {"network": "203.0.113.0"},
            "network",
            "Write the network with its prefix length, e.g. 203.0.113.0/24.",
        ),
        (
            {"network": "203.0.113.0/33"},
            "network",
            "203.0.113.0/33 is not an IPv4 or IPv6 network in CIDR notation.",
        ),
        ({"network": "banana/24"}, "network", "banana/24 is not an IPv4 or IPv6 network in CIDR notation."),
        (
            {"network": "203.0.113.7/24"},
            "network",
            "203.0.113.7/24 has host bits set: the network is 203.0.113.0/24.",
        ),
        (
            {"network": "10.0.0.0/15", "gateway": "10.0.0.1"},
            "network",
            "IPv4 pools are limited to /16 (65,534 usable addresses); split 10.0.0.0/15 into several pools.",
        ),
        (
            {"network": "203.0.113.1/32"},
            "network",
            "203.0.113.1/32 has no room for a server once its gateway is reserved.",
        ),
        ({"version": 6}, "version", "203.0.113.0/24 is an IPv4 network, not IPv6."),
        ({"gateway": "198.51.100.1"}, "gateway", "The gateway 198.51.100.1 is outside 203.0.113.0/24."),
        (
            {"gateway": "203.0.113.255"},
            "gateway",
            "The gateway 203.0.113.255 is the network or broadcast address of 203.0.113.0/24.",
        ),
        (
            {"gateway": "2001:db8::1"},
            "gateway",
            "The gateway must be an IPv4 address, like the network 203.0.113.0/24.",
        ),
        ({"gateway": "gateway"}, "gateway", "gateway is not an IP address (gateway)."),
        (
            {"reserved": ["203.0.113.7", "198.51.100.7"]},
            "reserved",
            "198.51.100.7 is outside 203.0.113.0/24.",
        ),
        (
            {"reserved": ["203.0.113.0"]},
            "reserved",
            "203.0.113.0 is the network or broadcast address of 203.0.113.0/24; it is never handed out.",
        ),
        ({"reserved": ["2001:db8::7"]}, "reserved", "2001:db8::7 is outside 203.0.113.0/24."),
        ({"dns_servers": ["1.1.1"]}, "dns_servers", "1.1.1 is not an IP address (DNS server)."),
        ({"dns_servers": []}, "dns_servers", "List should have at least 1 item after validation, not 0"),
        (
            {"dns_servers": ["1.1.1.1", "1.0.0.1", "8.8.8.8", "8.8.4.4", "9.9.9.9"]},
            "dns_servers",
            "List should have at most 4 items after validation, not 5",
        ),
    ],
)
def test_refusals_name_the_field_and_say_what_is_wrong(
    fields: dict[str, Any], field: str, message: str
) -> None:
    assert _errors(**fields) == {field: message}


def test_ipv6_pools_follow_the_same_rules() -> None:
    pool = IpPoolCreate.model_validate(
        {**VALID, "network": "2001:DB8:1::/64", "gateway": "2001:db8:1::1", "reserved": ["2001:db8:1::ff"]}
    )
    assert str(pool.network) == "2001:db8:1::/64"
    assert _errors(network="2001:db8:1::1/64", gateway="2001:db8:1::1") == {
        "network": "2001:db8:1::1/64 has host bits set: the network is 2001:db8:1::/64."
    }
    assert _errors(network="2001:db8:1::/64", gateway="2001:db8:1::", version=6) == {
        "gateway": "The gateway 2001:db8:1:: is the network or broadcast address of 2001:db8:1::/64."
    }
    assert _errors(network="2001:db8:1::/64", gateway="203.0.113.1", version=4) == {
        "version": "2001:db8:1::/64 is an IPv6 network, not IPv4.",
        "gateway": "The gateway must be an IPv6 address, like the network 2001:db8:1::/64.",
    }
    # An IPv6 pool may be as large as wanted: its addresses are not stored up front.
    assert IpPoolCreate.model_validate({**VALID, "network": "2001:db8::/32", "gateway": "2001:db8::1"})


def test_a_bad_network_does_not_pile_up_messages_on_the_other_fields() -> None:
    assert set(_errors(network="nonsense", gateway="203.0.113.1", reserved=["203.0.113.5"])) == {"network"}


def test_update_parses_the_same_way() -> None:
    update = IpPoolUpdate.model_validate(
        {"dns_servers": "1.1.1.1, 1.0.0.1\n1.1.1.1", "reserved": ["203.0.113.5"]}
    )
    assert update.dns_servers == [ip_address("1.1.1.1"), ip_address("1.0.0.1")]
    assert update.name is None
    with pytest.raises(ValidationError):
        IpPoolUpdate.model_validate({"network": "203.0.113.0/24"})  # fixed for the life of the pool


def test_split_list_and_labels() -> None:
    assert split_list(" 1.1.1.1,1.0.0.1;\n 2606:4700:4700::1111 \r\n") == [
        "1.1.1.1",
        "1.0.0.1",
        "2606:4700:4700::1111",
    ]
    assert count_label(65534) == "65,534"
    assert count_label(2**64 - 3) == "≈ 2⁶⁴"


def test_utilisation() -> None:
    usage = Utilisation.of(ip_network("203.0.113.0/29"), allocated=2, reserved=2)
    assert (usage.total, usage.free, usage.allocatable, usage.percent_used) == (6, 2, 4, 50.0)
    assert usage.percent_label == "50%"
    v6 = Utilisation.of(ip_network("2001:db8::/64"), allocated=3, reserved=1)
    assert v6.percent_label == "< 0.1%"
    assert Utilisation.of(ip_network("203.0.113.0/31"), allocated=0, reserved=2).percent_used == 100.0


def test_address_filter_links() -> None:
    assert AddressFilter().query(page=2) == {"page": "2"}
    assert AddressFilter.model_validate({"state": "free", "page": 3}).query(page=1) == {"state": "free"}
    assert AddressFilter.model_validate({"state": ""}).state is None
