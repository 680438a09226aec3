"""The switch edge: our frozen Flow values <-> os-ken OpenFlow 1.3 messages.

The only module that knows os-ken's message classes. `flow_from_stats` is the exact inverse
of `flow_mod` for everything we install, so that re-reading a programmed switch and diffing
gives an empty plan (tested against real Open vSwitch).
"""

from __future__ import annotations

from typing import Any

from os_ken.ofproto import nicira_ext, ofproto_v1_3

from controller.core.flows import (
    CONTROLLER_PORT, ApplyActions, Bucket, ClearActions, Conntrack, Flow, OtherAction, PopVlan, PushVlan, Group, GotoTable, GroupAction, Instruction, Meter,
    MeterInstruction, Output, SetField, WriteActions, WriteMetadata, make_flow,
)
from controller.core.pipeline import TABLE_IDS, TABLE_NAMES

_FULL_MASKS = {"metadata": 2**64 - 1, "eth_src": "ff:ff:ff:ff:ff:ff", "eth_dst": "ff:ff:ff:ff:ff:ff",
               "tcp_src": 0xFFFF, "tcp_dst": 0xFFFF, "udp_src": 0xFFFF, "udp_dst": 0xFFFF, "tcp_flags": 0xFFF,
               "ip_frag": 0xFF, "vlan_vid": 0x1FFF}


# Extension fields whose OXM class (Nicira NXM_1) sorts before the OpenFlow basic class:
# os-ken orders a match by class and field number, which would put ip_frag before its
# prerequisite eth_type and the switch would refuse the flow (OFPBMC_BAD_PREREQ).
_AFTER_PREREQUISITES = ("ip_frag",)


def ofp_match(parser: Any, flow: Flow) -> Any:
    fields: dict[str, Any] = {}
    for item in flow.match:
        fields[item.name] = item.value if item.mask is None else (item.value, item.mask)
    match = parser.OFPMatch(**fields)
    if not any(name in fields for name in _AFTER_PREREQUISITES):
        return match
    ordered = [f for f in match._fields2 if f[0] not in _AFTER_PREREQUISITES]  # noqa: SLF001
    ordered += [f for f in match._fields2 if f[0] in _AFTER_PREREQUISITES]  # noqa: SLF001
    return parser.OFPMatch(_ordered_fields=ordered)


def _action(parser: Any, ofproto: Any, action: object) -> Any:
    if isinstance(action, Output):
        max_len = action.max_len if action.port == CONTROLLER_PORT else 0
        return parser.OFPActionOutput(action.port, max_len)
    if isinstance(action, SetField):
        return parser.OFPActionSetField(**{action.name: action.value})
    if isinstance(action, GroupAction):
        return parser.OFPActionGroup(action.group_id)
    if isinstance(action, PushVlan):
        return parser.OFPActionPushVlan(action.ethertype)
    if isinstance(action, PopVlan):
        return parser.OFPActionPopVlan()
    if isinstance(action, Conntrack):
        table = nicira_ext.NX_CT_RECIRC_NONE if action.table is None else TABLE_IDS[action.table]
        return parser.NXActionCT(flags=nicira_ext.NX_CT_F_COMMIT if action.commit else 0, zone_src="",
                                 zone_ofs_nbits=action.zone, recirc_table=table, alg=0, actions=[])
    raise TypeError(f"unsupported action {action!r}")


def ofp_instructions(parser: Any, ofproto: Any, flow: Flow) -> list[Any]:
    result: list[Any] = []
    for instruction in flow.instructions:
        if isinstance(instruction, MeterInstruction):
            result.append(parser.OFPInstructionMeter(instruction.meter_id, ofproto.OFPIT_METER))
        elif isinstance(instruction, ApplyActions):
            result.append(parser.OFPInstructionActions(
                ofproto.OFPIT_APPLY_ACTIONS, [_action(parser, ofproto, a) for a in instruction.actions]))
        elif isinstance(instruction, ClearActions):
            result.append(parser.OFPInstructionActions(ofproto.OFPIT_CLEAR_ACTIONS, []))
        elif isinstance(instruction, WriteActions):
            result.append(parser.OFPInstructionActions(
                ofproto.OFPIT_WRITE_ACTIONS, [_action(parser, ofproto, a) for a in instruction.actions]))
        elif isinstance(instruction, WriteMetadata):
            result.append(parser.OFPInstructionWriteMetadata(instruction.value, instruction.mask))
        elif isinstance(instruction, GotoTable):
            result.append(parser.OFPInstructionGotoTable(TABLE_IDS[instruction.table]))
    return result


def flow_mod(datapath: Any, flow: Flow, command: str) -> Any:
    """An OFPFlowMod for `flow`: command is 'add', 'modify' (strict) or 'delete' (strict)."""
    ofproto, parser = datapath.ofproto, datapath.ofproto_parser
    commands = {"add": ofproto.OFPFC_ADD, "modify": ofproto.OFPFC_MODIFY_STRICT, "delete": ofproto.OFPFC_DELETE_STRICT}
    instructions = [] if command == "delete" else ofp_instructions(parser, ofproto, flow)
    return parser.OFPFlowMod(
        datapath, cookie=flow.cookie, cookie_mask=0, table_id=TABLE_IDS[flow.table], command=commands[command],
        idle_timeout=0, hard_timeout=0, priority=flow.priority, buffer_id=ofproto.OFP_NO_BUFFER,
        out_port=ofproto.OFPP_ANY, out_group=ofproto.OFPG_ANY, flags=0, match=ofp_match(parser, flow),
        instructions=instructions)


# Open vSwitch's fragment handling "nx-match" (OFPC_FRAG 3): first fragments keep their transport
# ports and ICMP type, later fragments carry none and match ip_frag=later. Under the default
# "normal", every fragment shows ports and type 0, so a first fragment could not be checked
# against the service it opens and a fragmented allowed ping was dropped.
OFPC_FRAG_NX_MATCH = 3


def switch_config(datapath: Any) -> Any:
    return datapath.ofproto_parser.OFPSetConfig(datapath, OFPC_FRAG_NX_MATCH, 128)


def async_config(datapath: Any) -> Any:
    """Cluster mode: packet-ins (samples, LLDP) and port events reach every role, so a SLAVE keeps
    its topology and bindings warm; flow-removed only the master (OpenFlow 1.3 OFPT_SET_ASYNC:
    one mask for the MASTER/EQUAL role, one for SLAVE)."""
    ofproto, parser = datapath.ofproto, datapath.ofproto_parser
    packet_in = 1 << ofproto.OFPR_NO_MATCH | 1 << ofproto.OFPR_ACTION | 1 << ofproto.OFPR_INVALID_TTL
    port_status = 1 << ofproto.OFPPR_ADD | 1 << ofproto.OFPPR_DELETE | 1 << ofproto.OFPPR_MODIFY
    flow_removed = (1 << ofproto.OFPRR_IDLE_TIMEOUT | 1 << ofproto.OFPRR_HARD_TIMEOUT | 1 << ofproto.OFPRR_DELETE
                    | 1 << ofproto.OFPRR_GROUP_DELETE)
    return parser.OFPSetAsync(datapath, [packet_in, packet_in], [port_status, port_status], [flow_removed, 0])


def packet_out(datapath: Any, port: int, data: bytes) -> Any:
    """A frame the controller itself sends (LLDP, ARP probes) out of one port."""
    ofproto, parser = datapath.ofproto, datapath.ofproto_parser
    return parser.OFPPacketOut(datapath, buffer_id=ofproto.OFP_NO_BUFFER, in_port=ofproto.OFPP_CONTROLLER,
                               actions=[parser.OFPActionOutput(port, 0)], data=data)


def meter_mod(datapath: Any, meter: Meter, command: str) -> Any:
    ofproto, parser = datapath.ofproto, datapath.ofproto_parser
    commands = {"add": ofproto.OFPMC_ADD, "modify": ofproto.OFPMC_MODIFY}
    band = parser.OFPMeterBandDrop(rate=meter.rate_pps, burst_size=meter.burst)
    flags = ofproto.OFPMF_PKTPS | ofproto.OFPMF_BURST
    return parser.OFPMeterMod(datapath, command=commands[command], flags=flags, meter_id=meter.meter_id,
                              bands=[band])


def group_mod(datapath: Any, group: Group, command: str) -> Any:
    ofproto, parser = datapath.ofproto, datapath.ofproto_parser
    commands = {"add": ofproto.OFPGC_ADD, "modify": ofproto.OFPGC_MODIFY, "delete": ofproto.OFPGC_DELETE}
    buckets = [] if command == "delete" else [
        parser.OFPBucket(weight=0, watch_port=b.watch_port, watch_group=ofproto.OFPG_ANY,
                         actions=[_action(parser, ofproto, a) for a in b.actions]) for b in group.buckets]
    return parser.OFPGroupMod(datapath, commands[command], ofproto.OFPGT_FF, group.group_id, buckets)


def group_from_stats(desc: Any) -> Group | None:
    """Our Group value for a group description entry, or None for a group type we never install."""
    if desc.type != ofproto_v1_3.OFPGT_FF:
        return None
    return Group(desc.group_id, tuple(Bucket(b.watch_port, tuple(_action_value(a) for a in b.actions))
                                      for b in desc.buckets))


def meter_from_stats(config: Any) -> Meter | None:
    """Our Meter value for a meter config entry, or None if it is not a single drop band."""
    bands = list(getattr(config, "bands", []))
    if len(bands) != 1 or not hasattr(bands[0], "rate"):
        return None
    return Meter(config.meter_id, bands[0].rate, bands[0].burst_size)


def _normalise_field(name: str, value: Any) -> tuple[str, object, object]:
    if isinstance(value, tuple):
        val, mask = value
        if mask == _FULL_MASKS.get(name):
            return name, val, None
        return name, val, mask
    return name, value, None


def _action_value(action: Any) -> object:
    name = type(action).__name__
    if name == "OFPActionOutput":
        return Output(action.port, action.max_len) if action.port == CONTROLLER_PORT else Output(action.port)
    if name == "OFPActionSetField":
        return SetField(action.key, action.value)
    if name == "OFPActionGroup":
        return GroupAction(action.group_id)
    if name == "OFPActionPushVlan":
        return PushVlan(action.ethertype)
    if name == "OFPActionPopVlan":
        return PopVlan()
    if name == "NXActionCT" and not action.actions and not action.alg and not action.zone_src:
        table = None if action.recirc_table == nicira_ext.NX_CT_RECIRC_NONE else TABLE_NAMES.get(
            action.recirc_table, str(action.recirc_table))
        return Conntrack(action.zone_ofs_nbits, bool(action.flags & nicira_ext.NX_CT_F_COMMIT), table)
    # Anything else is not ours (a foreign flow, to be removed or kept): represented, never sent.
    return OtherAction(str(action))


def flow_from_stats(stats: Any) -> Flow:
    """Our Flow value for one entry of an OFPFlowStatsReply."""
    match: dict[str, object] = {}
    for name, value in stats.match.items():
        key, val, mask = _normalise_field(name, value)
        match[key] = val if mask is None else (val, mask)
    instructions: list[Instruction] = []
    for instruction in stats.instructions:
        kind = type(instruction).__name__
        if kind == "OFPInstructionGotoTable":
            instructions.append(GotoTable(TABLE_NAMES.get(instruction.table_id, str(instruction.table_id))))
        elif kind == "OFPInstructionWriteMetadata":
            instructions.append(WriteMetadata(instruction.metadata, instruction.metadata_mask))
        elif kind == "OFPInstructionMeter":
            instructions.append(MeterInstruction(instruction.meter_id))
        elif kind == "OFPInstructionActions":
            actions = tuple(_action_value(a) for a in instruction.actions)
            if instruction.type == ofproto_v1_3.OFPIT_APPLY_ACTIONS:
                instructions.append(ApplyActions(actions))
            elif instruction.type == ofproto_v1_3.OFPIT_WRITE_ACTIONS:
                instructions.append(WriteActions(actions))
            elif instruction.type == ofproto_v1_3.OFPIT_CLEAR_ACTIONS:
                instructions.append(ClearActions())
        else:  # an instruction otseg never installs: the flow can then never equal one of ours
            instructions.append(ApplyActions((OtherAction(kind),)))
    table = TABLE_NAMES.get(stats.table_id, f"table-{stats.table_id}")
    return make_flow(table, stats.priority, match, instructions, stats.cookie)  # type: ignore[arg-type]
