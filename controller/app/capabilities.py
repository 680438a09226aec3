"""Capability discovery at the switch edge: what a connected switch says it can do.

On connect the shell asks once for table features (OFPMP_TABLE_FEATURES, an empty request:
a read), group features, meter features, and opens then discards an ONF bundle. The replies
become a `SwitchFeatures` value in otseg's field names; `profiles.from_features` (pure) turns
it into the profile the compiler targets, unless the topology document states one.

A request the switch does not answer, or answers with an error, counts as a capability it
lacks (fail closed). os-ken names experimenter match fields wrongly (it looks ONF and NXM
ids up without their experimenter), so they are decoded here from class and field numbers.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from controller.core.profiles import SwitchFeatures, TableFeature

log = logging.getLogger("otseg.capabilities")

ONF_EXPERIMENTER = 0x4F4E4600
OXM_OF_BASIC = 0x8000
NXM_0, NXM_1 = 0x0000, 0x0001
# (class, field) -> otseg's name, for the fields otseg matches (OpenFlow 1.3.5 7.2.3.7; OVS meta-flow.h).
_OXM_BASIC = {0: "in_port", 2: "metadata", 3: "eth_dst", 4: "eth_src", 5: "eth_type", 6: "vlan_vid", 7: "vlan_pcp",
              10: "ip_proto", 11: "ipv4_src", 12: "ipv4_dst", 13: "tcp_src", 14: "tcp_dst", 15: "udp_src",
              16: "udp_dst", 19: "icmpv4_type", 20: "icmpv4_code", 21: "arp_op", 22: "arp_spa", 23: "arp_tpa",
              24: "arp_sha", 25: "arp_tha", 42: "tcp_flags"}
_NXM = {(NXM_1, 26): "ip_frag", (NXM_1, 105): "ct_state", (NXM_1, 34): "tcp_flags"}
_ONF = {42: "tcp_flags"}
KNOWN = frozenset(_OXM_BASIC.values()) | frozenset(_NXM.values())  # os-ken names them as otseg does
OFPIT_GOTO_TABLE, OFPIT_WRITE_METADATA = 1, 2
PROBE_BUNDLE_ID = 0x0E5E0001


def field_name(oxm_id: Any) -> str | None:
    """otseg's name of one OXM id of a table-features match property, or None (a field otseg never uses)."""
    kind = getattr(oxm_id, "type", None)
    if not isinstance(kind, str):
        return None
    number = int(kind[6:]) if kind.startswith("field_") and kind[6:].isdigit() else None
    exp_id = getattr(oxm_id, "exp_id", None)
    if exp_id is not None:  # os-ken keeps an experimenter field it misreads as field_<class << 7 | field>
        return _ONF.get(number & 0x7F) if exp_id == ONF_EXPERIMENTER and number is not None else None
    if number is not None:
        oxm_class, field = number >> 7, number & 0x7F
        return _OXM_BASIC.get(field) if oxm_class == OXM_OF_BASIC else _NXM.get((oxm_class, field))
    return kind if kind in KNOWN else None


def table_feature(body: Any, ofproto: Any) -> TableFeature:
    fields: set[str] = set()
    goto = write_metadata = False
    for prop in body.properties:
        if prop.type == ofproto.OFPTFPT_MATCH:
            fields.update(name for name in map(field_name, prop.oxm_ids) if name)
        elif prop.type == ofproto.OFPTFPT_INSTRUCTIONS:
            types = {i.type for i in prop.instruction_ids}
            goto = OFPIT_GOTO_TABLE in types
            write_metadata = OFPIT_WRITE_METADATA in types
    return TableFeature(body.table_id, body.max_entries, body.metadata_match, body.metadata_write,
                        frozenset(fields), goto, write_metadata)


def read_features(datapath: Any, request: Callable[[Any, Any], list[Any] | None],
                  call: Callable[[Any, Any], tuple[Any | None, str | None]]) -> SwitchFeatures:
    """Ask the switch; each question it does not answer is None in the result."""
    ofproto, parser = datapath.ofproto, datapath.ofproto_parser
    tables_reply = request(datapath, parser.OFPTableFeaturesStatsRequest(datapath, 0, []))
    tables = None
    if tables_reply:
        tables = tuple(table_feature(body, ofproto) for reply in tables_reply
                       for body in (reply if isinstance(reply, list) else [reply]))
    groups = request(datapath, parser.OFPGroupFeaturesStatsRequest(datapath, 0))
    group_types = ff_groups = None
    if groups:
        group = groups[0]
        group_types = group.types
        ff_groups = group.max_groups[ofproto.OFPGT_FF] if len(group.max_groups) > ofproto.OFPGT_FF else 0
    meters_reply = request(datapath, parser.OFPMeterFeaturesStatsRequest(datapath, 0))
    meters = meters_reply[0].max_meter if meters_reply else None
    return SwitchFeatures(tables, group_types, ff_groups, meters, _probe_bundle(datapath, call))


def _probe_bundle(datapath: Any, call: Callable[[Any, Any], tuple[Any | None, str | None]]) -> bool | None:
    ofproto, parser = datapath.ofproto, datapath.ofproto_parser
    flags = ofproto.ONF_BF_ATOMIC | ofproto.ONF_BF_ORDERED
    reply, error = call(datapath, parser.ONFBundleCtrlMsg(datapath, PROBE_BUNDLE_ID, ofproto.ONF_BCT_OPEN_REQUEST,
                                                          flags, []))
    if reply is None:
        log.info("switch %#x refused an ONF bundle (%s): updates will be make-before-break", datapath.id, error)
        return False if error else None
    call(datapath, parser.ONFBundleCtrlMsg(datapath, PROBE_BUNDLE_ID, ofproto.ONF_BCT_DISCARD_REQUEST, flags, []))
    return True
