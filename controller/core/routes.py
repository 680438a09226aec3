"""What a topology change changes for the compiler's units (pure): per home switch, the switches
whose forwarding toward it moved; per switch, the inputs of its infrastructure entries."""

from __future__ import annotations

from controller.core.flows import IN_PORT
from controller.core.topology import Topology
from controller.core.units import Context, group_ids, trunk_ports_of


def route_changes(old: Context, new: Context) -> dict[int, set[int]]:
    """Per home switch: the switches whose next hop, port, protection or trunk ports toward it changed."""
    result: dict[int, set[int]] = {}
    everywhere = old.topology.switches | new.topology.switches
    for home in new.topology.switches:
        before, after = old.topology.parents_toward(home), new.topology.parents_toward(home)
        protected_before, protected_after = old.protections(home), new.protections(home)
        changed: set[int] = set()
        for dpid in everywhere:
            parent = after.get(dpid)
            if parent != before.get(dpid) or protected_before.get(dpid) != protected_after.get(dpid):
                changed.add(dpid)
            elif parent is not None and old.topology.port_toward(dpid, parent) != new.topology.port_toward(dpid, parent):
                changed.add(dpid)
            elif dpid in protected_after and trunk_ports_of(old.topology, dpid) != trunk_ports_of(new.topology, dpid):
                protection = protected_after[dpid]
                keys = [(protection.primary, protection.backup, protection.backup),
                        (protection.primary, IN_PORT, protection.backup)]
                ids_before = group_ids(trunk_ports_of(old.topology, dpid))
                ids_after = group_ids(trunk_ports_of(new.topology, dpid))
                if any(ids_before.get(key) != ids_after.get(key) for key in keys):
                    changed.add(dpid)
        result[home] = changed
    return result


def infra_inputs(topology: Topology, dpid: int) -> tuple[object, ...]:
    return (trunk_ports_of(topology, dpid), tuple(sorted(p.port for p in topology.trunk_ports if p.dpid == dpid)),
            tuple(topology.edge_ports(dpid)))
