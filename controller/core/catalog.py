"""The built-in catalog of industrial and infrastructure services.

The contract (shared/design/policy-language.md) fixes the names and ports listed there;
entries marked `# added` are otseg additions, documented in docs/policy.md.
A custom service in a policy may not reuse a built-in name (the validator says so).
Client ports (where an initiator sends from, so where its replies may go) default to the
ephemeral range 1024-65535; the catalog names them where a protocol uses fixed ones.
"""

from __future__ import annotations

from controller.core.model import Service, ServiceMatch


def _tcp(low: int, high: int | None = None) -> ServiceMatch:
    return ServiceMatch("tcp", low, low if high is None else high)


def _udp(low: int, high: int | None = None, clients: tuple[tuple[int, int], ...] | None = None) -> ServiceMatch:
    high = low if high is None else high
    return ServiceMatch("udp", low, high, clients) if clients else ServiceMatch("udp", low, high)


def _eth(ethertype: int) -> ServiceMatch:
    return ServiceMatch("ethertype", ethertype, ethertype)


ICMP_ECHO = ServiceMatch("icmp")

_CATALOG: dict[str, tuple[ServiceMatch, ...]] = {
    "icmp": (ICMP_ECHO,),
    "modbus": (_tcp(502),),
    "dnp3": (_tcp(20000), _udp(20000)),
    "enip": (_tcp(44818), _udp(44818)),
    "enip-io": (_udp(2222, clients=((2222, 2222),)),),  # class-1 I/O: both ends use 2222
    "s7comm": (_tcp(102),),
    "iec61850-mms": (_tcp(102),),
    "iec104": (_tcp(2404),),
    "opcua": (_tcp(4840),),
    "bacnet": (_udp(47808, clients=((47808, 47808),)),),  # BACnet/IP devices send from 47808
    "hart-ip": (_tcp(5094), _udp(5094)),
    "mqtt": (_tcp(1883),),
    "mqtts": (_tcp(8883),),
    "fins": (_udp(9600), _tcp(9600)),
    "goose": (_eth(0x88B8),),
    "sv": (_eth(0x88BA),),
    "profinet-rt": (_eth(0x8892),),
    "ptp": (_eth(0x88F7), _udp(319, 320, clients=((319, 320),))),
    "ssh": (_tcp(22),),
    "https": (_tcp(443),),
    "rdp": (_tcp(3389),),
    "dns": (_udp(53), _tcp(53)),
    "ntp": (_udp(123, clients=((123, 123),)),),  # ntpd and most embedded clients send from 123
    "syslog": (_udp(514),),
    "http": (_tcp(80),),  # added
    "snmp": (_udp(161),),  # added
    "snmp-trap": (_udp(162),),  # added
    "profinet-io": (_udp(34962, 34964),),  # added: PROFINET CM/RPC over UDP
    "vnc": (_tcp(5900),),  # added
}

BUILTIN_SERVICES: tuple[Service, ...] = tuple(
    Service(name=name, matches=tuple(sorted(matches)), builtin=True) for name, matches in sorted(_CATALOG.items())
)
BUILTIN_NAMES: frozenset[str] = frozenset(_CATALOG)
