"""The tick pipeline's pure decisions: what one round trip sends, and whose reply is whose."""

from __future__ import annotations

import pytest

from falcon_platform.stores.redis_pipeline import (
    SET_MANY_SCRIPT,
    Op,
    plan_round_trip,
    route_replies,
)


def test_reads_of_a_tick_become_one_mget_of_distinct_keys_sent_first() -> None:
    ops = [Op("set", "w", b"1", 100), Op("get", "a"), Op("get", "b"), Op("get", "a")]
    plan = plan_round_trip(ops)
    assert plan.commands == [("MGET", "a", "b"), ("SET", "w", b"1", "PX", 100)]
    assert plan.read_keys == ["a", "b"]


def test_a_claim_is_set_nx_then_get_and_writes_keep_their_order() -> None:
    ops = [Op("claim", "k", b"mine", 500), Op("set", "c", b"2", 7)]
    assert plan_round_trip(ops).commands == [
        ("SET", "k", b"mine", "NX", "PX", 500),
        ("GET", "k"),
        ("SET", "c", b"2", "PX", 7),
    ]


def test_writes_only_send_no_mget_and_nothing_sends_nothing() -> None:
    assert plan_round_trip([Op("set", "c", b"2", 7)]).commands == [("SET", "c", b"2", "PX", 7)]
    assert plan_round_trip([]).commands == []


def test_each_get_answers_its_own_key_duplicates_included() -> None:
    ops = [Op("get", "a"), Op("get", "b"), Op("get", "a")]
    plan = plan_round_trip(ops)
    assert route_replies(ops, plan, [[b"A", None]]) == [(True, b"A"), (True, None), (True, b"A")]


def test_a_won_claim_answers_none_and_a_lost_one_the_winners_value() -> None:
    ops = [Op("claim", "k1", b"mine", 5), Op("claim", "k2", b"mine", 5), Op("set", "s", b"x", 5)]
    plan = plan_round_trip(ops)
    # SET NX replies: True (stored) / False (existed); then each claim's GET; then the SET.
    replies = [True, b"mine", False, b"theirs", True]
    assert route_replies(ops, plan, replies) == [(True, None), (True, b"theirs"), (True, None)]


def test_two_claims_of_one_key_in_a_tick_the_second_sees_the_first() -> None:
    ops = [Op("claim", "k", b"first", 5), Op("claim", "k", b"second", 5), Op("get", "k")]
    plan = plan_round_trip(ops)
    replies = [[None], True, b"first", False, b"first"]
    assert route_replies(ops, plan, replies) == [(True, None), (True, b"first"), (True, b"first")]


def test_a_get_after_a_write_of_its_key_in_the_same_trip_reads_that_write() -> None:
    ops = [Op("get", "k"), Op("set", "k", b"new", 5), Op("get", "k")]
    plan = plan_round_trip(ops)
    # The MGET went first and saw nothing; the second get was queued after the write.
    assert route_replies(ops, plan, [[None], True]) == [(True, None), (True, None), (True, b"new")]


@pytest.mark.parametrize(
    "replies",
    [[], [[b"a"]], [[b"a", b"b"], True, True], ["not a list", True]],
    ids=["none", "short mget", "extra reply", "mget not a list"],
)
def test_replies_that_do_not_match_the_plan_are_an_error_not_a_wrong_answer(
    replies: list[object],
) -> None:
    ops = [Op("get", "a"), Op("get", "b"), Op("set", "c", b"1", 5)]
    with pytest.raises(ValueError, match=r"repl|MGET"):
        route_replies(ops, plan_round_trip(ops), replies)


def test_several_cache_fills_are_one_eval_keys_then_values_then_the_ttl() -> None:
    ops = [Op("set", "a", b"1", 600), Op("get", "x"), Op("set", "b", b"2", 600)]
    plan = plan_round_trip(ops)
    assert plan.commands == [
        ("MGET", "x"),
        ("EVAL", SET_MANY_SCRIPT, 2, "a", "b", b"1", b"2", 600),
    ]
    # One reply (the script's count) answers both fills.
    assert route_replies(ops, plan, [[b"X"], 2]) == [(True, None), (True, b"X"), (True, None)]


def test_fills_with_different_ttls_stay_one_set_each() -> None:
    ops = [Op("set", "a", b"1", 600), Op("set", "b", b"2", 700)]
    assert plan_round_trip(ops).commands == [
        ("SET", "a", b"1", "PX", 600),
        ("SET", "b", b"2", "PX", 700),
    ]


def test_the_script_sets_every_key_with_the_ttl_it_is_given() -> None:
    """The Lua text itself: KEYS[i] gets ARGV[i], the TTL is the argument after the values."""
    assert "redis.call('SET', KEYS[i], ARGV[i], 'PX', ttl)" in SET_MANY_SCRIPT
    assert "ARGV[#KEYS + 1]" in SET_MANY_SCRIPT
