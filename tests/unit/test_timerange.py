"""Playout control parameters (media.timerange): what parses, what is refused and which parameter
the refusal names, and the UTC text form manifests use."""

from __future__ import annotations

from fractions import Fraction

import pytest

from media.timerange import (
    MAX_SECONDS,
    PARAMETERS,
    SEGMENT_PARAMETERS,
    Control,
    ControlError,
    Instant,
    iso_utc,
    parse_control,
)

T0_MS = 1_795_255_200_000  # 2026-11-21T10:00:00Z


def q(**values: str) -> dict[str, list[str]]:
    return {name: [value] for name, value in values.items()}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, Control()),
        (q(dvr_window_length="60"), Control(dvr_window=60)),
        (q(dvr_window_length="0"), Control(dvr_window=0)),
        (q(dvr_window_length="86400"), Control(dvr_window=86400)),
        (q(dvr_window_length=str(MAX_SECONDS)), Control(dvr_window=MAX_SECONDS)),
        (q(time_shift="0"), Control()),
        (q(time_shift="300"), Control(time_shift=300)),
        (q(time_shift="0", vbegin="10"), Control(vbegin=Instant(media=Fraction(10)))),
        # Seconds of media time, whole and with fractions.
        (q(vbegin="3600"), Control(vbegin=Instant(media=Fraction(3600)))),
        (q(vbegin="0"), Control(vbegin=Instant(media=Fraction(0)))),
        (q(vbegin="3600.5"), Control(vbegin=Instant(media=Fraction(7201, 2)))),
        (q(vbegin="12.000000001"), Control(vbegin=Instant(media=Fraction(12_000_000_001, 10**9)))),
        (q(vbegin=" 3600 "), Control(vbegin=Instant(media=Fraction(3600)))),
        (q(vend="60"), Control(vend=Instant(media=Fraction(60)))),
        (
            q(vbegin="1795255200", vend="1795255260.25"),
            Control(
                vbegin=Instant(media=Fraction(1_795_255_200)), vend=Instant(media=Fraction(7_181_021_041, 4))
            ),
        ),
        # ISO 8601 with a UTC designator, fractions and offsets.
        (q(vbegin="2026-11-21T10:00:00Z"), Control(vbegin=Instant(utc_ms=T0_MS))),
        (q(vbegin="2026-11-21T10:00:00.5Z"), Control(vbegin=Instant(utc_ms=T0_MS + 500))),
        (q(vbegin="2026-11-21T10:00:00.123Z"), Control(vbegin=Instant(utc_ms=T0_MS + 123))),
        (q(vbegin="2026-11-21T10:00:00.123999Z"), Control(vbegin=Instant(utc_ms=T0_MS + 123))),
        (q(vbegin="2026-11-21T11:00:00+01:00"), Control(vbegin=Instant(utc_ms=T0_MS))),
        (q(vbegin="2026-11-21T05:30:00-04:30"), Control(vbegin=Instant(utc_ms=T0_MS))),
        (q(vbegin="2026-11-21T10:00:00+00:00"), Control(vbegin=Instant(utc_ms=T0_MS))),
        (q(vbegin="2026-11-21T10:00Z"), Control(vbegin=Instant(utc_ms=T0_MS))),
        (q(vbegin="1970-01-01T00:00:00Z"), Control(vbegin=Instant(utc_ms=0))),
        (
            q(vbegin="2026-11-21T10:00:00Z", vend="2026-11-21T10:01:00.250Z"),
            Control(vbegin=Instant(utc_ms=T0_MS), vend=Instant(utc_ms=T0_MS + 60_250)),
        ),
        # Instants in different zones compare in UTC: 10:30+01:00 is 09:30Z, after 09:00Z.
        (
            q(vbegin="2026-11-21T09:00:00Z", vend="2026-11-21T10:30:00+01:00"),
            Control(vbegin=Instant(utc_ms=T0_MS - 3_600_000), vend=Instant(utc_ms=T0_MS - 1_800_000)),
        ),
        # Mixed forms cannot be compared without the timeline: present() checks them.
        (
            q(vbegin="2026-11-21T10:00:00Z", vend="10"),
            Control(vbegin=Instant(utc_ms=T0_MS), vend=Instant(media=Fraction(10))),
        ),
        # The last value of a repeated parameter wins.
        ({"time_shift": ["10", "20"]}, Control(time_shift=20)),
        ({"dvr_window_length": ["abc", "60"]}, Control(dvr_window=60)),
        # Other parameters are not ours.
        (q(hls_fmp4="true", t="secret"), Control()),
    ],
)
def test_valid_controls(query: dict[str, list[str]], expected: Control) -> None:
    assert parse_control(query) == expected


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        (q(dvr_window_length=""), "dvr_window_length"),
        (q(dvr_window_length="-1"), "dvr_window_length"),
        (q(dvr_window_length="1.5"), "dvr_window_length"),
        (q(dvr_window_length="60s"), "dvr_window_length"),
        (q(dvr_window_length=" 60"), "dvr_window_length"),
        (q(dvr_window_length="1" * 13), "dvr_window_length"),
        (q(dvr_window_length=str(MAX_SECONDS + 1)), "dvr_window_length"),
        (q(time_shift="-30"), "time_shift"),
        (q(time_shift="abc"), "time_shift"),
        (q(time_shift="0x10"), "time_shift"),
        (q(time_shift="1e3"), "time_shift"),
        # Characters Python calls digits that are not decimal ASCII digits (a query is decoded
        # as UTF-8 or Latin-1: %C2%B2 and a raw 0xB2 byte both give SUPERSCRIPT TWO).
        (q(time_shift="\u00b2"), "time_shift"),
        (q(dvr_window_length="1\u00b2"), "dvr_window_length"),
        (q(time_shift="\u0661\u0662"), "time_shift"),  # ARABIC-INDIC DIGITS ONE TWO
        (q(vbegin="\u0661\u0662"), "vbegin"),
        (q(vbegin="\uff11\uff12"), "vbegin"),  # FULLWIDTH DIGITS
        (q(vbegin=""), "vbegin"),
        (q(vbegin="-5"), "vbegin"),
        (q(vbegin="1e3"), "vbegin"),
        (q(vbegin="abc"), "vbegin"),
        (q(vbegin="3600."), "vbegin"),
        (q(vbegin=".5"), "vbegin"),
        (q(vbegin="1.0000000001"), "vbegin"),  # more than nanoseconds
        (q(vbegin="999999999999"), "vbegin"),  # beyond any epoch seconds
        (q(vbegin="2026-11-21"), "vbegin"),  # a date without a time
        (q(vbegin="2026-11-21 10:00:00Z"), "vbegin"),
        (q(vbegin="2026-11-21T10:00:00"), "vbegin"),  # no zone: ambiguous
        (q(vbegin="2026-11-21T25:00:00Z"), "vbegin"),
        (q(vbegin="2026-02-30T10:00:00Z"), "vbegin"),
        (q(vbegin="2026-11-21T10:00:00+25:00"), "vbegin"),
        (q(vbegin="1969-12-31T23:59:59Z"), "vbegin"),
        (q(vbegin="2026-11-21T10:00:00Z" + "0" * 40), "vbegin"),
        # '+' not percent-encoded reaches us as a space (form encoding): refused, not misread.
        (q(vbegin="2026-11-21T11:00:00 01:00"), "vbegin"),
        (q(vend="tomorrow"), "vend"),
        (q(vend="2026-11-21T10:00:00"), "vend"),
        # The order of a sub-clip.
        (q(vbegin="20", vend="10"), "vend"),
        (q(vbegin="10", vend="10"), "vend"),
        (q(vbegin="2026-11-21T10:00:01Z", vend="2026-11-21T10:00:00Z"), "vend"),
        (q(vbegin="2026-11-21T10:00:00Z", vend="2026-11-21T11:00:00+01:00"), "vend"),  # same instant
        # time_shift moves a live edge; a sub-clip has fixed times.
        (q(time_shift="10", vbegin="20"), "time_shift"),
        (q(time_shift="10", vend="2026-11-21T10:00:00Z"), "time_shift"),
    ],
)
def test_bad_controls_name_the_parameter(query: dict[str, list[str]], parameter: str) -> None:
    with pytest.raises(ControlError) as caught:
        parse_control(query)
    assert caught.value.parameter == parameter
    assert str(caught.value).startswith(f"query parameter {parameter}: ")


def test_control_error_is_a_value_error_with_a_bounded_message() -> None:
    with pytest.raises(ValueError, match="dvr_window_length") as caught:
        parse_control(q(dvr_window_length="x" * 10_000))
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1, "1970-01-01T00:00:00.001Z"),
        (999, "1970-01-01T00:00:00.999Z"),
        (T0_MS, "2026-11-21T10:00:00.000Z"),
        (T0_MS + 86_399_999, "2026-11-22T09:59:59.999Z"),
        (951_782_400_000, "2000-02-29T00:00:00.000Z"),
        (4_102_444_800_000, "2100-01-01T00:00:00.000Z"),
    ],
)
def test_iso_utc(ms: int, text: str) -> None:
    assert iso_utc(ms) == text
    # What the manifests write parses back to the same instant.
    assert parse_control(q(vbegin=text)).vbegin == Instant(utc_ms=ms)


def test_instant_text() -> None:
    assert str(Instant(utc_ms=T0_MS + 5)) == "2026-11-21T10:00:00.005Z"
    assert str(Instant(media=Fraction(7201, 2))) == "3600.5 s"


def test_query_carries_parameters_as_written() -> None:
    raw = {
        "vbegin": ["2026-11-21T11:00:00+01:00"],
        "vend": ["3600.5"],
        "dvr_window_length": ["60"],
        "hls_fmp4": ["true"],
    }
    # '+' must be percent-encoded, or it would come back as a space; ':' stays readable.
    assert Control.query(raw) == "dvr_window_length=60&vbegin=2026-11-21T11:00:00%2B01:00&vend=3600.5"
    assert Control.query(raw, SEGMENT_PARAMETERS) == "vbegin=2026-11-21T11:00:00%2B01:00&vend=3600.5"
    assert Control.query({"time_shift": ["1", "30"]}) == "time_shift=30"
    assert Control.query({}) == ""
    assert set(SEGMENT_PARAMETERS) < set(PARAMETERS) and "dvr_window_length" not in SEGMENT_PARAMETERS


def test_carried_query_parses_back_to_the_same_control() -> None:
    from urllib.parse import parse_qs

    raw = q(vbegin="2026-11-21T11:00:00+01:00", vend="2026-11-21T10:30:00.250Z")
    again = parse_qs(Control.query(raw))
    assert parse_control(again) == parse_control(raw)
    assert parse_control(again).clip and not Control().clip
