"""Read an Open vSwitch bridge's tables as `ovs-ofctl` prints them, and load compiled tables into a
scratch bridge to print them the same way: an independent comparison of what a switch holds
with what the compiler says (used by the integration tests and the soak benchmark)."""

from __future__ import annotations

import re
import subprocess

from controller.core.flows import SwitchTables
from controller.core.render import render_ovs, render_ovs_groups

_VOLATILE = re.compile(r"(duration|n_packets|n_bytes|idle_age|hard_age)=[^,\s]+,?\s*")


def dump(bridge: str) -> list[str]:
    """A bridge's OpenFlow 1.3 flows as OVS prints them, without counters and ages, sorted."""
    text = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", bridge], capture_output=True, text=True,
                          check=True).stdout
    return sorted(_VOLATILE.sub("", line).strip() for line in text.splitlines()[1:] if line.strip())


def dump_groups(bridge: str) -> list[str]:
    text = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-groups", bridge], capture_output=True, text=True,
                          check=True).stdout
    return sorted(line.strip() for line in text.splitlines()[1:] if line.strip())


def dump_with_counters(bridge: str) -> list[str]:
    text = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", bridge], capture_output=True, text=True,
                          check=True).stdout
    return [line.strip() for line in text.splitlines()[1:] if line.strip()]


def reference_dump(tables: SwitchTables, scratch: str = "otsegref") -> list[str]:
    """The compiler's tables loaded by ovs-ofctl into a scratch bridge, dumped the same way."""
    subprocess.run(["ovs-vsctl", "--if-exists", "del-br", scratch], check=True)
    subprocess.run(["ovs-vsctl", "add-br", scratch, "--", "set", "bridge", scratch, "datapath_type=netdev",
                    "protocols=OpenFlow13", "fail-mode=secure"], check=True)
    try:
        for meter in sorted(tables.meters):
            subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "add-meter", scratch,
                            f"meter={meter.meter_id},pktps,burst,band=type=drop,rate={meter.rate_pps},"
                            f"burst_size={meter.burst}"], check=True)
        if tables.groups:
            subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "add-groups", scratch, "-"],
                           input=render_ovs_groups(tables), text=True, check=True)
        subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "add-flows", scratch, "-"], input=render_ovs(tables),
                       text=True, check=True)
        return dump(scratch) + dump_groups(scratch)
    finally:
        subprocess.run(["ovs-vsctl", "--if-exists", "del-br", scratch], check=True)
