"""Link expiry forgives the time the controller could not run (controller/app/link_liveness.py)."""

from __future__ import annotations

from controller.app.link_liveness import STALL_TOLERANCE, forgive_stall


def test_a_check_on_time_changes_nothing() -> None:
    links = {"a": 10.0, "b": 11.0}
    assert forgive_stall(links, due=12.0, now=12.0 + STALL_TOLERANCE) == 0.0
    assert links == {"a": 10.0, "b": 11.0}


def test_a_late_check_moves_every_link_forward_by_the_stall() -> None:
    links = {"a": 10.0, "b": 11.0}
    stall = forgive_stall(links, due=12.0, now=15.0)
    assert stall == 3.0
    assert links == {"a": 13.0, "b": 14.0}
    # with LINK_TIMEOUT 2.5 s: before forgiving, both links looked silent for 4-5 s
    assert all(15.0 - heard < 2.5 for heard in links.values())


def test_an_early_wake_forgives_nothing() -> None:
    links = {"a": 10.0}
    assert forgive_stall(links, due=12.0, now=11.0) == 0.0
    assert links == {"a": 10.0}


def test_after_many_flow_mods_no_link_expires_until_the_hold_ends() -> None:
    from controller.app import link_liveness  # noqa: PLC0415

    link_liveness._hold_until = 0.0
    assert link_liveness.hold_for_flow_mods(50, clock=lambda: 100.0) == 0.0  # a small change holds nothing
    hold = link_liveness.hold_for_flow_mods(3000, clock=lambda: 100.0)
    assert hold == 4.0
    links = {"silent": 90.0, "fresh": 101.9}
    assert link_liveness.keep_alive_while_held(links, now=102.0, link_timeout=2.5)
    assert links == {"silent": 102.0 - 1.25, "fresh": 101.9}
    assert not link_liveness.keep_alive_while_held(links, now=104.5, link_timeout=2.5)  # hold over
    link_liveness._hold_until = 0.0
