"""Connection tracking as the verifier sees it: the states a tracker lookup can give a packet
(the `oracle` field of `controller.verify.space`), and what one switch's tracker answers given
the packets it committed (`tracker_answers`). Each switch has its own tracker; an ICMP error is
related by the header it quotes, which its sender chooses (Linux nf_conntrack_inet_error, OVS
lib/conntrack.c)."""

from __future__ import annotations

from controller.core.pipeline import CT_ESTABLISHED, CT_INVALID, CT_NEW, CT_RELATED, CT_REPLY, CT_TRACKED
from controller.verify.space import Function, Space

# Oracle values: the connection state a tracker lookup reports (ct_state bits).
# ORACLE_REL_REPLY: an ICMP error about a connection between its two addresses; ORACLE_REL_OTHER:
# one its sender made quote another connection of the destination (the tracker cannot tell them apart).
ORACLE_NEW, ORACLE_EST, ORACLE_EST_REPLY, ORACLE_REL, ORACLE_REL_REPLY, ORACLE_INVALID, ORACLE_REL_OTHER = range(7)
ORACLE_CT_STATE = {
    ORACLE_NEW: CT_TRACKED | CT_NEW,
    ORACLE_EST: CT_TRACKED | CT_ESTABLISHED,
    ORACLE_EST_REPLY: CT_TRACKED | CT_ESTABLISHED | CT_REPLY,
    ORACLE_REL: CT_TRACKED | CT_RELATED,
    ORACLE_REL_REPLY: CT_TRACKED | CT_RELATED | CT_REPLY,
    ORACLE_INVALID: CT_TRACKED | CT_INVALID,
    ORACLE_REL_OTHER: CT_TRACKED | CT_RELATED | CT_REPLY,
}


def tracker_answers(space: Space, committed: Function) -> Function:
    """The ct_state a switch's tracker gives, as a relation of oracle, packet and `ct`, when
    `committed` are the packets it committed: a connection is established (or related) here
    only if it was committed here; otherwise the lookup says new."""
    s = space
    keys = ("nw_src", "nw_dst", "nw_proto", "tp_src", "tp_dst")
    known = s.forget(committed, [n for n in s.fields if n not in keys])
    reverse = s.replies_to(known)
    # An ICMP error is related by the header it quotes, which its sender chooses: the tracker checks
    # only that the error goes to the end that sent the quoted packet (Linux nf_conntrack_inet_error,
    # OVS lib/conntrack.c). Any source may send it.
    responders = s.forget(known, ["nw_src", "nw_proto", "tp_src", "tp_dst"])
    # to an initiator I from a source S when I has a connection to some peer other than S:
    # exists peer (in the scratch field `aux`). pairs(I, peer) and peer != S
    pairs = s.forget(known, ["nw_proto", "tp_src", "tp_dst"])
    renamed = s.bdd.let({**dict(zip(s.bits("nw_src").names, s.bits("nw_dst").names)),
                         **dict(zip(s.bits("nw_dst").names, s.bits("aux").names))}, pairs)
    other = s.forget(renamed & ~s.same("aux", "nw_src"), ["aux"])
    reverse_pairs = s.forget(s.reversed_direction(known), ["nw_proto", "tp_src", "tp_dst"])
    icmp = s.eq("nw_proto", 1)
    known_here = {ORACLE_EST: known, ORACLE_EST_REPLY: reverse, ORACLE_REL: icmp & responders,
                  ORACLE_REL_REPLY: icmp & reverse_pairs, ORACLE_REL_OTHER: icmp & other}
    result = s.false
    for oracle, state in ORACLE_CT_STATE.items():
        condition = known_here.get(oracle, s.true)
        result |= s.eq("oracle", oracle) & condition & s.eq("ct", state)
        if oracle in known_here:
            result |= s.eq("oracle", oracle) & ~condition & s.eq("ct", CT_TRACKED | CT_NEW)
    return result
