"""The pure checks at the edge, without the stack: each bad input is a RequestError, at once.

The same inputs go through the running functions in the tests of each function; here the
parsing functions alone run in milliseconds.
"""

from __future__ import annotations

import base64
import json

import pytest

from devstack.when import CLASS_DAYS_AHEAD, iso, wall
from shared.adapters.mercadopago import signature_parts
from shared.errors import InvalidRequest, Unauthenticated
from shared.services.channels import CHANNEL_ID, PushNotification
from shared.services.consent import parse_state, sign_state
from shared.views import listing
from shared.web.requests import parse_notification

V1 = "a1" * 32


# -- x-signature -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"ts=1700000000,v1={V1}", ("1700000000", V1)),
        (f" ts = 1700000000000 , V1={V1} ", ("1700000000000", V1)),
        (f"ts=1700000000,v1={V1},v2=whatever", ("1700000000", V1)),
    ],
)
def test_a_well_formed_signature_header_gives_its_timestamp_and_hash(
    header: str, expected: tuple[str, str]
) -> None:
    assert signature_parts(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        "ts=1700000000,v1=\xe9",
        f"ts=1700000000,v1={V1[:-1]}é",
        f"ts=²,v1={V1}",
        f"ts=\u0661\u0667\u0660\u0660,v1={V1}",
        f"ts=1700000000,v1={V1},ts=1",
        f"ts=1700000000,v1={V1[:-1]}",
        f"ts=1700000000,v1={V1}g",
        "ts=1700000000",
        f"v1={V1}",
        f"ts=1700000000;v1={V1}",
        f"ts=1700000000,v1={V1}," + "x=1," * 100,
        "",
    ],
)
def test_a_malformed_or_non_ascii_signature_header_is_unauthenticated(header: str) -> None:
    with pytest.raises(Unauthenticated):
        signature_parts(header)


# -- payment ids -------------------------------------------------------------------------------


@pytest.mark.parametrize("payment_id", ["²", "١٢٣", "ⅷ", "12a", "1" * 21, "-1", "", "1 2"])
def test_an_ipn_payment_id_that_is_not_ascii_digits_is_invalid(payment_id: str) -> None:
    with pytest.raises(InvalidRequest, match="payment id"):
        parse_notification({"topic": "payment", "id": payment_id}, {}, b"", "")


def test_an_ipn_payment_id_of_ascii_digits_is_a_payment_notification() -> None:
    note = parse_notification({"topic": "payment", "id": " 98765432101 "}, {}, b"", "")

    assert getattr(note, "payment_id", None) == "98765432101"


# -- OAuth state -------------------------------------------------------------------------------


def test_a_state_we_signed_parses_back() -> None:
    state = sign_state("key", "Nonce_-123", 1_900_000_000)

    assert parse_state(state) == ("Nonce_-123", 1_900_000_000)


@pytest.mark.parametrize(
    "state",
    [
        "é.1.x",
        "a.².x",
        "a." + "9" * 5000 + ".x",
        "a." + "9" * 13 + "." + "A" * 43,
        "a.1." + "A" * 42 + "é",
        "a/b.1." + "A" * 43,
        "a" * 65 + ".1." + "A" * 43,
        ".1." + "A" * 43,
        "a.1." + "A" * 43 + ".extra",
        "",
    ],
)
def test_a_state_that_is_not_ours_in_shape_is_refused_before_any_check(state: str) -> None:
    assert parse_state(state) is None


# -- push notifications ------------------------------------------------------------------------


@pytest.mark.parametrize("channel_id", ["a/b", ".", "..", "__x__", "a//b", "ch-" + "A" * 32])
def test_a_channel_id_not_shaped_like_ours_names_no_channel(channel_id: str) -> None:
    assert not CHANNEL_ID.fullmatch(channel_id)
    assert CHANNEL_ID.fullmatch("ch-" + "0123456789abcdef" * 2)


@pytest.mark.parametrize("state", ["sync", "exists", "not_exists"])
def test_the_documented_resource_states_are_read(state: str) -> None:
    headers = {"x-goog-channel-id": "ch-1", "x-goog-resource-state": state}

    assert PushNotification.from_headers(headers).state == state


@pytest.mark.parametrize("state", ["bogus", "EXISTS", "exists\u200b"])
def test_an_undocumented_resource_state_is_invalid(state: str) -> None:
    headers = {"x-goog-channel-id": "ch-1", "x-goog-resource-state": state}

    with pytest.raises(InvalidRequest, match="X-Goog-Resource-State"):
        PushNotification.from_headers(headers)


# -- listing window ----------------------------------------------------------------------------


def _query(**params: str) -> listing.Query:
    return listing.parse_query({name: [value] for name, value in params.items()})


@pytest.mark.parametrize(
    "params",
    [
        {"from": "0001-01-01T00:00:00+14:00"},
        {"to": "9999-12-31T23:59:59-14:00"},
        {"from": "9999-12-31T00:00:00+00:00"},
        {"from": "9998-12-31T23:59:59-03:00", "to": "9999-01-31T00:00:00-03:00"},
        {"public": "1", "from": "9999-12-31T00:00:00+00:00"},
    ],
)
def test_an_instant_outside_1970_to_9999_is_invalid(params: dict[str, str]) -> None:
    with pytest.raises(InvalidRequest, match="must lie between"):
        _query(**params)


def test_the_last_accepted_window_still_renders_as_a_feed() -> None:
    query = _query(**{"from": "9998-12-31T20:59:59-03:00", "format": "ics"})

    assert b"BEGIN:VCALENDAR" in listing.render_ics([], query)


@pytest.mark.parametrize("limit", ["9" * 5000, "²", "0", "251"])
def test_a_limit_outside_1_to_250_is_invalid(limit: str) -> None:
    with pytest.raises(InvalidRequest, match="limit must"):
        _query(limit=limit)


WEEK = (iso(CLASS_DAYS_AHEAD, 0), iso(CLASS_DAYS_AHEAD + 7, 0))
"""A listing window of a week, as a page token carries it."""


def _token(**fields: str) -> str:
    raw = {"m": "admin", "f": WEEK[0], "t": WEEK[1]}
    return base64.urlsafe_b64encode(json.dumps({**raw, "g": "", **fields}).encode()).decode()


@pytest.mark.parametrize(
    "token",
    [
        _token(f="0001-01-01T00:00:00+14:00"),
        _token(t="9999-12-31T23:59:59-14:00"),
        _token(f=wall(CLASS_DAYS_AHEAD, 0)),  # no offset
        base64.urlsafe_b64encode(b"[" * 3000).decode(),
        "A" * 5000,
    ],
)
def test_a_crafted_page_token_is_invalid(token: str) -> None:
    with pytest.raises(InvalidRequest, match="pageToken"):
        _query(pageToken=token)


def test_a_page_token_of_ours_gives_back_its_window() -> None:
    query = _query(pageToken=_token(g="google-token"))

    assert query.google_page_token == "google-token"
    assert query.time_min.isoformat() == WEEK[0]
