"""Switch tables as JSON and back, losslessly: how `otseg verify --live` gets what the switches
hold from the controller (GET /v1/tables, `live_document`).

Role: `tables_to_json` / `tables_from_json` encode the frozen values of `controller.core.flows`
(flows, their instructions and actions, groups, meters). Decoding builds only those classes,
by name from a fixed registry, and checks every field's type: a document from the network
can never construct anything else. A malformed document raises `CodecError` (what, where).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from controller.core.topology import Link, PortRef, Topology
from controller.core.flows import (
    ApplyActions, Bucket, ClearActions, Conntrack, Field, Flow, GotoTable, Group, GroupAction, Meter,
    MeterInstruction, OtherAction, Output, PopVlan, PushVlan, SetField, SwitchTables, WriteActions, WriteMetadata,
)

_CLASSES = {cls.__name__: cls for cls in (
    ApplyActions, ClearActions, Conntrack, GotoTable, GroupAction, MeterInstruction, OtherAction, Output, PopVlan,
    PushVlan, SetField, WriteActions, WriteMetadata)}


class CodecError(ValueError):
    pass


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        body = {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"type": type(value).__name__, **body}
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        cls = _CLASSES.get(value.get("type", ""))  # type: ignore[arg-type]
        if cls is None:
            raise CodecError(f"{where}: unknown kind {value.get('type')!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        extra = set(value) - names - {"type"}
        if extra:
            raise CodecError(f"{where}: unexpected {sorted(extra)} in {cls.__name__}")
        try:
            return cls(**{k: _decode(v, f"{where}.{k}") for k, v in value.items() if k != "type"})
        except TypeError as error:
            raise CodecError(f"{where}: {error}") from None
    if isinstance(value, list):
        return tuple(_decode(v, f"{where}[{i}]") for i, v in enumerate(value))
    if value is None or isinstance(value, (int, str, bool)):
        return value
    raise CodecError(f"{where}: {type(value).__name__} is not a table value")


def tables_to_json(tables: dict[int, SwitchTables]) -> list[dict[str, Any]]:
    return [{"dpid": dpid,
             "flows": [{"table": f.table, "priority": f.priority, "cookie": f.cookie,
                        "match": [[m.name, m.value, m.mask] for m in f.match],
                        "instructions": [_encode(i) for i in f.instructions]}
                       for f in sorted(t.flows, key=lambda f: (f.table, -f.priority, f.match))],
             "groups": [{"group_id": g.group_id,
                         "buckets": [{"watch_port": b.watch_port, "actions": [_encode(a) for a in b.actions]}
                                     for b in g.buckets]} for g in sorted(t.groups)],
             "meters": [[m.meter_id, m.rate_pps, m.burst] for m in sorted(t.meters)]}
            for dpid, t in sorted(tables.items())]


def _int(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise CodecError(f"{where}: an integer is needed, not {value!r}")
    return value


def tables_from_json(document: Any) -> dict[int, SwitchTables]:
    if not isinstance(document, list):
        raise CodecError("tables: a list of switches is needed")
    tables: dict[int, SwitchTables] = {}
    for number, switch in enumerate(document):
        where = f"tables[{number}]"
        if not isinstance(switch, dict):
            raise CodecError(f"{where}: an object is needed")
        dpid = _int(switch.get("dpid"), f"{where}.dpid")
        flows = []
        for index, raw in enumerate(switch.get("flows", [])):
            at = f"{where}.flows[{index}]"
            if not isinstance(raw, dict) or not isinstance(raw.get("table"), str):
                raise CodecError(f"{at}: a flow object with a table name is needed")
            match = []
            for item in raw.get("match", []):
                if not isinstance(item, list) or len(item) != 3 or not isinstance(item[0], str):
                    raise CodecError(f"{at}.match: [name, value, mask] is needed, not {item!r}")
                match.append(Field(item[0], _decode(item[1], at), _decode(item[2], at)))
            instructions = tuple(_decode(i, f"{at}.instructions") for i in raw.get("instructions", []))
            flows.append(Flow(raw["table"], _int(raw.get("priority"), f"{at}.priority"), tuple(match), instructions,
                              _int(raw.get("cookie"), f"{at}.cookie")))
        groups = []
        for index, raw in enumerate(switch.get("groups", [])):
            at = f"{where}.groups[{index}]"
            if not isinstance(raw, dict):
                raise CodecError(f"{at}: a group object is needed")
            buckets = tuple(Bucket(_int(b.get("watch_port"), f"{at}.watch_port"),
                                   tuple(_decode(a, f"{at}.actions") for a in b.get("actions", [])))
                            for b in raw.get("buckets", []) if isinstance(b, dict))
            groups.append(Group(_int(raw.get("group_id"), f"{at}.group_id"), buckets))
        meters = [Meter(*(_int(v, f"{where}.meters") for v in m)) for m in switch.get("meters", [])
                  if isinstance(m, list) and len(m) == 3]
        tables[dpid] = SwitchTables(dpid, frozenset(flows), frozenset(meters), frozenset(groups))
    return tables


def live_document(policy: dict[str, Any], topology: Topology, located: dict[str, PortRef],
                  tables: dict[int, SwitchTables], names: dict[int, str]) -> dict[str, Any]:
    """What GET /v1/tables answers: the policy in force, the topology and bindings the tables
    were compiled for, and the tables as read from the switches."""
    return {"policy": policy,
            "topology": {"switches": sorted(topology.switches),
                         "links": [[[l.a.dpid, l.a.port], [l.b.dpid, l.b.port]] for l in sorted(topology.links)],
                         "ports": [[p.dpid, p.port] for p in sorted(topology.ports)],
                         "declared_trunks": [[p.dpid, p.port] for p in sorted(topology.declared_trunks)]},
            "located": {name: [where.dpid, where.port] for name, where in sorted(located.items())},
            "switch_names": {str(dpid): name for dpid, name in sorted(names.items())},
            "tables": tables_to_json(tables)}


def read_live_document(document: Any) -> tuple[Topology, dict[str, PortRef], dict[int, SwitchTables], dict[int, str]]:
    """`live_document` read back (the policy text is parsed by the caller, with the validator)."""
    if not isinstance(document, dict):
        raise CodecError("an object is needed")
    raw = document["topology"]

    def port(item: Any) -> PortRef:
        if not isinstance(item, list) or len(item) != 2:
            raise CodecError(f"[dpid, port] is needed, not {item!r}")
        return PortRef(_int(item[0], "dpid"), _int(item[1], "port"))
    topology = Topology(frozenset(_int(d, "switches") for d in raw["switches"]),
                        frozenset(Link.between(port(a), port(b)) for a, b in raw["links"]),
                        (), frozenset(port(p) for p in raw["ports"]), frozenset(port(p) for p in raw["declared_trunks"]))
    located = {str(name): port(where) for name, where in document["located"].items()}
    names = {int(dpid): str(name) for dpid, name in document.get("switch_names", {}).items()}
    return topology, located, tables_from_json(document["tables"]), names
