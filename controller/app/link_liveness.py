"""Link expiry that does not mistake a busy controller for a dead link.

os_ken.topology.switches declares a link down when no LLDP crossed it for LINK_TIMEOUT. It
measures that silence in wall-clock time, and the hub is cooperative: while one greenthread
computes (a compile, encoding thousands of flow-mods for a switch that just connected), no
LLDP packet-in is processed, and when the expiry loop runs first after such a stall every
link looks silent. Seen on a 1,000-asset policy: links flapped for minutes, each flap a
full recompile that caused the next stall.

The replacement loop measures its own lateness: when it wakes more than STALL_TOLERANCE
after it was due, the hub was stalled for that long, and every link's last-heard time moves
forward by the stall (LLDP that arrived meanwhile is still queued, unprocessed). A real
failure is therefore detected late by at most the stall; cable pulls are reported at once
by port-status anyway, and fast-failover groups protect the traffic meanwhile.

The switches stall too: Open vSwitch digesting a few thousand flow-mods (a 1,000-asset
network coming up) answered LLDP up to 3 s late here, and every link of the network
expired at once, each flap a recompile. So after a reconcile that sent many flow-mods,
`hold_for_flow_mods` holds link expiry for a while proportional to the work sent.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

log = logging.getLogger("otseg.links")
STALL_TOLERANCE = 0.5
HOLD_BASE_SECONDS = 1.0
HOLD_PER_FLOW_MOD = 0.001  # seconds
HOLD_MAX_SECONDS = 10.0
_hold_until = 0.0


def hold_for_flow_mods(flow_mods: int, clock: Callable[[], float] = time.time) -> float:
    """After sending `flow_mods` messages, links may not expire for a while; returns the hold."""
    global _hold_until
    if flow_mods < 100:
        return 0.0
    hold = min(HOLD_MAX_SECONDS, HOLD_BASE_SECONDS + flow_mods * HOLD_PER_FLOW_MOD)
    _hold_until = max(_hold_until, clock() + hold)
    return hold


def keep_alive_while_held(links: dict[Any, float], now: float, link_timeout: float) -> bool:
    """During a hold no link can expire: each keeps at least half its timeout from now."""
    if now >= _hold_until:
        return False
    floor = now - link_timeout / 2
    for link, heard in list(links.items()):
        if heard < floor:
            links[link] = floor
    return True


def forgive_stall(links: dict[Any, float], due: float, now: float) -> float:
    """Shift every link's last-heard time by how late the check runs; returns the stall."""
    stall = now - due
    if stall <= STALL_TOLERANCE:
        return 0.0
    for link, heard in list(links.items()):
        links[link] = heard + stall
    return stall


def stall_tolerant_link_loop(switches_app: Any, clock: Callable[[], float] = time.time) -> None:
    """A drop-in for Switches.link_loop: os-ken's expiry and reverse-link logic, after forgive_stall and
    keep_alive_while_held."""
    from os_ken.topology import event  # noqa: PLC0415
    from os_ken.topology.switches import Link  # noqa: PLC0415

    due = clock() + switches_app.TIMEOUT_CHECK_PERIOD
    while switches_app.is_active:
        switches_app.link_event.clear()
        now = clock()
        stall = forgive_stall(switches_app.links, due, now)
        if stall:
            log.info("controller was busy for %.1f s: link timers paused for that long", stall)
        keep_alive_while_held(switches_app.links, now, switches_app.LINK_TIMEOUT)
        deleted = [link for link, heard in switches_app.links.items() if heard + switches_app.LINK_TIMEOUT < now]
        for link in deleted:
            log.info("no LLDP over %s:%d -> %s:%d for %.1f s", link.src.dpid, link.src.port_no, link.dst.dpid,
                     link.dst.port_no, now - switches_app.links[link])
            switches_app.links.link_down(link)
            switches_app.send_event_to_observers(event.EventLinkDelete(link))
            reverse = Link(link.dst, link.src)
            if reverse not in deleted:  # very likely down too: check it early, as os-ken does
                switches_app.links.rev_link_set_timestamp(reverse, now - switches_app.LINK_TIMEOUT)
                if link.dst in switches_app.ports:
                    switches_app.ports.move_front(link.dst)
                    switches_app.lldp_event.set()
        due = clock() + switches_app.TIMEOUT_CHECK_PERIOD
        switches_app.link_event.wait(timeout=switches_app.TIMEOUT_CHECK_PERIOD)


def install(switches_class: Any) -> None:
    switches_class.link_loop = stall_tolerant_link_loop
