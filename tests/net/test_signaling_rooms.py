"""Room bookkeeping and the rate limiter, without any transport: indices, replacement, topology, limits."""

from __future__ import annotations

import pytest

from net.rooms import MAX_INDEX, Room, RoomError, TokenBucket


def make_room(mesh_limit: int = 4, max_participants: int = 32) -> Room:
    return Room("ward-3", mesh_limit=mesh_limit, max_participants=max_participants)


def test_indices_are_small_stable_and_reused_by_the_same_participant() -> None:
    """Newcomers get the smallest free index from 1; a participant who leaves and comes back gets its own
    index again, and nobody else takes it meanwhile."""
    room = make_room()
    alice, _, _ = room.admit("alice", "A", "surgeon", connection=None, now=1.0)
    bob, _, _ = room.admit("bob", "B", "expert", connection=None, now=2.0)
    assert (alice.index, bob.index) == (1, 2)
    assert room.remove(alice)
    carol, _, _ = room.admit("carol", "C", "trainee", connection=None)
    assert carol.index == 3
    alice_again, replaced, _ = room.admit("alice", "A", "surgeon", connection=None)
    assert alice_again.index == 1 and replaced is None


def test_reconnect_replaces_without_counting_against_the_limit() -> None:
    """A second admission of a participant returns the old member to close; a full room still takes it."""
    room = make_room(max_participants=2)
    first, _, _ = room.admit("alice", "A", "surgeon", connection="socket-1")
    room.admit("bob", "B", "expert", connection="socket-2")
    with pytest.raises(RoomError, match="full"):
        room.admit("carol", "C", "expert", connection="socket-3")
    second, replaced, _ = room.admit("alice", "A", "surgeon", connection="socket-4")
    assert replaced is first and second.index == first.index
    assert not room.remove(first)  # the old connection leaving does not remove the new one
    assert room.members["alice"] is second


def test_room_switches_to_relay_once_and_stays() -> None:
    """The admission that takes the room above the mesh limit switches it to relay mode; it stays there."""
    room = make_room(mesh_limit=2)
    switches = [room.admit(p, p, "expert", connection=None)[2] for p in ("a", "b", "c", "d")]
    assert switches == [False, False, True, False]
    assert room.topology == "relay" and room.relay_id == "relay"
    for member in list(room.members.values())[1:]:
        room.remove(member)
    assert room.topology == "relay"


def test_welcome_lists_the_others_in_index_order() -> None:
    """The welcome names the room, the member and everyone else, by index."""
    room = make_room()
    for p in ("zed", "amy", "kim"):
        room.admit(p, p.title(), "observer", connection=None)
    welcome = room.welcome(room.members["amy"])
    assert [peer["participant"] for peer in welcome["peers"]] == ["zed", "kim"]
    assert welcome["index"] == 2 and welcome["topology"] == "mesh" and welcome["relay"] is None


def test_indices_are_recycled_only_when_every_one_was_used() -> None:
    """A room that has seen MAX_INDEX participants forgets the absent ones' indices and reuses them."""
    room = make_room(max_participants=MAX_INDEX + 10)
    room._indices = {f"p{i}": i for i in range(1, MAX_INDEX + 1)}
    room.admit("p7", "p7", "expert", connection=None)
    newcomer, _, _ = room.admit("late", "late", "expert", connection=None)
    assert newcomer.index == 1  # p1 is absent: its index is free again; p7 (present) keeps 7
    assert room.members["p7"].index == 7


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    """60 at once, then 20 a second: the 61st is refused until 50 ms of refill have passed."""
    now = [0.0]
    bucket = TokenBucket(rate=20.0, burst=60.0, clock=lambda: now[0])
    assert all(bucket.take() for _ in range(60))
    assert not bucket.take()
    now[0] += 0.049
    assert not bucket.take()
    now[0] += 0.002
    assert bucket.take() and not bucket.take()
    now[0] += 1000.0  # refill is capped at the burst
    assert sum(bucket.take() for _ in range(100)) == 60
