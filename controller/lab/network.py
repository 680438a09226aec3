"""Build a lab network description in Mininet on Open vSwitch (userspace datapath).

The same topologies/*.yaml that `otseg compile` reads: switches with their dpids, links on
the exact port numbers, hosts with the MAC and IP their policy asset has (or their own,
for unknown devices). Switches run OpenFlow 1.3, fail-mode secure, and point at the
controller. Needs root, Open vSwitch running, and Mininet importable.
"""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from functools import partial
from typing import Any

from controller.core.model import Policy
from controller.policy.topology_doc import LabNetwork

LAB_PREFIX = 8  # every lab address is on-link (one L2 segment, enforced by otseg)
UNREACHABLE_CONTROLLER = "tcp:127.0.0.1:9"  # the discard port: nothing listens there


@dataclass(frozen=True)
class LabHostInfo:
    name: str
    mac: str
    ip: str | None
    asset: bool  # False for unknown devices (not in the policy)
    intf: str  # the host's NIC (raw frames are sent and sniffed here)
    vlan: int | None = None  # the asset's declared VID: its address lives on a VLAN interface of intf


def host_table(lab: LabNetwork, policy: Policy) -> list[LabHostInfo]:
    infos = []
    for host in lab.hosts:
        asset = next((a for a in policy.assets if a.name == host.name), None)
        mac = asset.mac if asset else host.mac
        ip = asset.ip if asset else host.ip
        assert mac is not None
        infos.append(LabHostInfo(host.name, mac, ip, asset is not None, f"{_short(host.name)}-eth0",
                                 asset.vlan if asset else None))
    return infos


def _short(name: str) -> str:
    """Mininet names interfaces after hosts; Linux allows 15 characters."""
    return name.replace("-", "")[:10]


class Lab:
    def __init__(self, lab: LabNetwork, policy: Policy, controller_port: int = 6653,
                 more_controllers: tuple[int, ...] = ()) -> None:
        self.lab = lab
        self.policy = policy
        self.controller_port = controller_port
        # A cluster: every switch connects to each of these ports too (Open vSwitch takes several controllers).
        self.controller_ports = (controller_port, *more_controllers)
        self.hosts = {info.name: info for info in host_table(lab, policy)}
        short = [_short(name) for name in self.hosts] + [self.switch_node(name) for name, _ in lab.switches]
        clashes = sorted({n for n in short if short.count(n) > 1})
        if clashes:
            raise ValueError(f"lab node names clash after shortening to 10 characters: {clashes}")
        self.net: Any = None

    def start(self) -> None:
        from mininet.log import setLogLevel  # noqa: PLC0415  (Mininet is a Debian package, root only)
        from mininet.net import Mininet  # noqa: PLC0415
        from mininet.node import OVSSwitch, RemoteController  # noqa: PLC0415

        setLogLevel("warning")
        switch = partial(OVSSwitch, datapath="user", protocols="OpenFlow13", failMode="secure")
        net = Mininet(switch=switch, controller=None, autoSetMacs=False, autoStaticArp=False, build=False)
        class Controller(RemoteController):  # type: ignore[misc,valid-type]
            """Mininet checks a remote controller with `telnet` and decodes what it prints as UTF-8:
            the controller's OpenFlow HELLO (a random xid) sometimes is not, and the lab crashed."""

            def checkListening(self) -> None:  # noqa: N802  (Mininet's name)
                with socket.create_connection((self.ip, self.port), timeout=5):
                    pass

        net.addController(Controller("c0", ip="127.0.0.1", port=self.controller_port))
        for name, dpid in self.lab.switches:
            net.addSwitch(self.switch_node(name), dpid=f"{dpid:016x}")
        by_dpid = {dpid: name for name, dpid in self.lab.switches}
        for link in self.lab.links:
            net.addLink(self.switch_node(by_dpid[link.a.dpid]), self.switch_node(by_dpid[link.b.dpid]),
                        port1=link.a.port, port2=link.b.port)
        for host in self.lab.hosts:
            info = self.hosts[host.name]
            node = net.addHost(_short(host.name), mac=info.mac, ip=f"{info.ip}/{LAB_PREFIX}" if info.ip else None)
            net.addLink(node, self.switch_node(by_dpid[host.where.dpid]), port2=host.where.port)
        self.net = net
        net.build()
        net.start()
        for name, _ in self.lab.switches:  # exactly the switch setup docs/operations.md gives an operator
            subprocess.run(["ovs-vsctl", "set", "bridge", self.switch_node(name), "other-config:disable-in-band=true",
                            "fail_mode=secure", "protocols=OpenFlow13"], check=True)
            if len(self.controller_ports) > 1:
                self.restore_control(name)
        for switch in net.switches:  # the root-namespace ends of switch ports must stay silent
            for intf in switch.intfList():
                if intf.name != "lo":
                    subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{intf.name}.disable_ipv6=1"], check=False)
        for host in self.lab.hosts:
            node = self.node(host.name)
            info = self.hosts[host.name]
            node.cmd("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1")
            node.cmd(f"ethtool -K {info.intf} tx off >/dev/null 2>&1")  # TCP over the userspace datapath
            if info.ip is None:
                node.cmd(f"ip addr flush dev {info.intf}")
            elif info.vlan is not None:  # a device that tags its frames: its address on the VLAN interface
                vif = f"{info.intf}.{info.vlan}"
                made = node.cmd(f"ip link add link {info.intf} name {vif} type vlan id {info.vlan} && echo made")
                if "made" in made:
                    node.cmd(f"ip addr flush dev {info.intf}; sysctl -qw net.ipv6.conf.{vif.replace('.', '/')}"
                             f".disable_ipv6=1; ip addr add {info.ip}/{LAB_PREFIX} dev {vif}; ip link set {vif} up; "
                             f"ethtool -K {vif} tx off >/dev/null 2>&1")
                else:  # e.g. no 8021q kernel module: crafted frames still carry the tag, sockets do not
                    print(f"lab: {host.name} declares VLAN {info.vlan} but its VLAN interface could not be made "
                          f"({made.strip()}); its socket probes will fail", flush=True)

    @staticmethod
    def switch_node(name: str) -> str:
        """The OVS bridge name of a lab switch (interface names must stay within 15 characters)."""
        return name[:10]

    def cut_control(self, switch_name: str) -> None:
        """The switch loses its control channel (as when the management network fails): it is
        pointed at an address nobody answers, and keeps its tables (fail-mode secure). Not
        `ovs-vsctl del-controller`: with no controller configured Open vSwitch flushes the tables."""
        subprocess.run(["ovs-vsctl", "set-controller", self.switch_node(switch_name), UNREACHABLE_CONTROLLER],
                       check=True)

    def restore_control(self, switch_name: str) -> None:
        subprocess.run(["ovs-vsctl", "set-controller", self.switch_node(switch_name),
                        *(f"tcp:127.0.0.1:{port}" for port in self.controller_ports)], check=True)

    def node(self, host_name: str) -> Any:
        return self.net.get(_short(host_name))

    def set_link(self, a: str, b: str, up: bool) -> None:
        """Bring the link between two lab switches down or up (both interfaces, like a cable)."""
        self.net.configLinkStatus(self.switch_node(a), self.switch_node(b), "up" if up else "down")

    def _cable(self, host_name: str, switch_name: str, port: int) -> str:
        """A new cable from the host to `switch_name`:`port`; returns the host's new interface name."""
        host = self.node(host_name)
        switch = self.net.get(self.switch_node(switch_name))
        link = self.net.addLink(host, switch, port2=port)
        subprocess.run(["ovs-vsctl", "add-port", switch.name, link.intf2.name, "--", "set", "Interface",
                        link.intf2.name, f"ofport_request={port}"], check=True)
        subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{link.intf2.name}.disable_ipv6=1"], check=False)
        new = link.intf1.name
        host.cmd(f"sysctl -qw net.ipv6.conf.{new}.disable_ipv6=1; ethtool -K {new} tx off >/dev/null 2>&1")
        return str(new)

    def replug(self, host_name: str, switch_name: str, port: int) -> str:
        """Move a host's cable: its interface goes down, a new one appears on `switch_name`:`port`
        with the same MAC and IP. Returns the new interface name."""
        info = self.hosts[host_name]
        host = self.node(host_name)
        host.cmd(f"ip link set {info.intf} down; ip addr flush dev {info.intf}")
        new = self._cable(host_name, switch_name, port)
        host.cmd(f"ip link set {new} address {info.mac}")
        host.cmd(f"ip link set {new} up")
        if info.ip and info.vlan is not None:
            host.cmd(f"ip link del {info.intf}.{info.vlan}; ip link add link {new} name {new}.{info.vlan} type vlan "
                     f"id {info.vlan}; ip addr add {info.ip}/{LAB_PREFIX} dev {new}.{info.vlan}; "
                     f"ip link set {new}.{info.vlan} up")
        elif info.ip:
            host.cmd(f"ip addr add {info.ip}/{LAB_PREFIX} dev {new}")
        self.hosts[host_name] = LabHostInfo(info.name, info.mac, info.ip, info.asset, new, info.vlan)
        return new

    def add_nic(self, host_name: str, switch_name: str, port: int) -> str:
        """Give a host a second interface, cabled to `switch_name`:`port` (a laptop with two NICs).
        No address is configured on it. Returns the new interface name."""
        new = self._cable(host_name, switch_name, port)
        self.node(host_name).cmd(f"ip link set {new} up")
        return new

    def stop(self) -> None:
        if self.net is not None:
            self.net.stop()
            self.net = None

    def dump_flows(self, switch_name: str) -> str:
        return subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", self.switch_node(switch_name)],
                              capture_output=True, text=True, check=True).stdout
