"""The header space: one BDD variable per bit of every field a switch can match, set or carry.

Role: the symbolic sets of the verifier (`controller.verify`) are binary decision diagrams
over these variables, built with `dd.cudd` (CUDD, in C: the PyPI wheel ships it). A set of
packets is one BDD; intersection, union, complement and "forget a field" (existential
quantification) are BDD operations, so a check over every header costs what the structure
of the tables costs, not what 2^600 headers would.

Fields follow Open vSwitch's flow key, not the OpenFlow names: what the switch can tell
apart is what the verifier must tell apart. ARP's sender and target addresses are `nw_src`
and `nw_dst`, its opcode is `nw_proto` (as in OVS); ICMP type and code are `tp_src` and
`tp_dst`; the TCP and UDP ports share `tp_src`/`tp_dst`. `universe()` states which keys
exist at all (an ARP key has no IP protocol, a later fragment no ports, ...).

Beside the packet fields there are variables of the verifier's own:
- `o_sw`, `o_port`: where the packet entered the network (its origin), kept along the path;
- `o_eth_dst`, `o_vlan`, `o_pcp`: the destination and tag it was sent with (switches may
  rewrite the current ones);
- `pend_eth_dst`, `pend_valid`: an Ethernet destination written into the action set, not yet
  applied (it is applied when the action set runs, forgotten when it is cleared);
- `oracle`: the connection state of the packet's 5-tuple in the network's connection tracker
  (see `controller.verify.allowed`); a lookup sets `ct` from it.

Invariants: the variable order is fixed (no dynamic reordering: results are reproducible);
bits are ordered most significant first, so prefixes and ranges are short chains; fields
that are compared with each other are interleaved bit by bit (equality is then linear).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from dd import cudd

Function = cudd.Function

WIDTHS: dict[str, int] = {
    "eth_dst": 48, "o_eth_dst": 48, "pend_eth_dst": 48, "pend_valid": 1,
    "nw_dst": 32, "meta_lo": 32,
    "eth_type": 16, "nw_proto": 8, "frag": 2, "tp_dst": 16, "tp_src": 16, "tcp_flags": 12, "ct": 8, "oracle": 3,
    "meta_hi": 32, "in_port": 16, "o_port": 16, "o_sw": 12,
    "vlan": 13, "o_vlan": 13, "pcp": 3, "o_pcp": 3,
    "eth_src": 48, "nw_src": 32, "aux": 32, "arp_sha": 48, "arp_tha": 48,
}
# Top to bottom. A tuple interleaves its fields bit by bit (all of equal width).
ORDER: tuple[str | tuple[str, ...], ...] = (
    ("eth_dst", "o_eth_dst", "pend_eth_dst"), "pend_valid", "nw_dst", "meta_lo",
    "eth_type", "nw_proto", "frag", "tp_dst", "tp_src", "tcp_flags", "ct", "oracle",
    "meta_hi", ("in_port", "o_port"), "o_sw", ("vlan", "o_vlan"), ("pcp", "o_pcp"),
    "eth_src", ("nw_src", "aux"), "arp_sha", "arp_tha",
)
MAX_PORT = (1 << 16) - 1
ETH_IPV4, ETH_ARP, ETH_RARP = 0x0800, 0x0806, 0x8035
# ICMP queries and the replies a tracker expects for them (type -> type, code kept)
ICMP_REPLIES = {8: 0, 13: 14, 15: 16, 17: 18}
VLAN_PRESENT = 0x1000
# ports-carrying IP protocols in Open vSwitch's key (tp_src/tp_dst are 0 for any other)
PORT_PROTOCOLS = (6, 17, 132)
# the fields a packet carries from switch to switch (the rest is per switch, or the verifier's own)
PACKET_FIELDS = ("eth_dst", "eth_src", "eth_type", "vlan", "pcp", "nw_src", "nw_dst", "nw_proto", "frag",
                 "tp_src", "tp_dst", "tcp_flags", "arp_sha", "arp_tha")
ORIGIN_FIELDS = ("o_sw", "o_port", "o_eth_dst", "o_vlan", "o_pcp", "oracle")
SWITCH_LOCAL = ("in_port", "meta_lo", "meta_hi", "ct", "pend_eth_dst", "pend_valid")


class ModelError(ValueError):
    """Something in a table the verifier cannot model exactly (it refuses rather than guess)."""


def mac_int(text: str) -> int:
    return int(text.replace(":", ""), 16)


def ip_int(text: str) -> int:
    a, b, c, d = (int(part) for part in text.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def to_int(value: object) -> int:
    if isinstance(value, int):
        return value
    text = str(value)
    if ":" in text:
        return mac_int(text)
    if "." in text:
        return ip_int(text)
    return int(text, 0)


@dataclass(frozen=True)
class Bits:
    """One field's variables, most significant first."""

    name: str
    names: tuple[str, ...]

    @property
    def width(self) -> int:
        return len(self.names)


class Space:
    """The BDD manager and the header variables (one per verifier run or cached model)."""

    def __init__(self) -> None:
        self.bdd = cudd.BDD()
        self.bdd.configure(reordering=False)
        self.fields: dict[str, Bits] = {}
        ordered: list[str] = []
        for item in ORDER:
            group = item if isinstance(item, tuple) else (item,)
            width = WIDTHS[group[0]]
            for name in group:
                self.fields[name] = Bits(name, tuple(f"{name}_{i}" for i in range(width - 1, -1, -1)))
            for i in range(width):
                ordered.extend(self.fields[name].names[i] for name in group)
        self.bdd.declare(*ordered)
        self.true, self.false = self.bdd.true, self.bdd.false
        self._eq_cache: dict[tuple[str, int, int], Function] = {}
        self._var_sets: dict[tuple[str, ...], set[str]] = {}

    # ---- building sets ----------------------------------------------------------------------

    def bits(self, name: str) -> Bits:
        return self.fields[name]

    def masked(self, name: str, value: int, mask: int | None = None) -> Function:
        """The packets whose field `name` equals `value` on the bits of `mask` (all bits if None)."""
        bits = self.fields[name]
        full = (1 << bits.width) - 1
        mask = full if mask is None else mask
        if value & ~full & mask or mask & ~full:
            if value & mask & ~full:
                return self.false  # a value this field can never hold
            mask &= full
        key = (name, value & mask, mask)
        cached = self._eq_cache.get(key)
        if cached is None:
            assignment = {var: bool((value >> (bits.width - 1 - i)) & 1)
                          for i, var in enumerate(bits.names) if (mask >> (bits.width - 1 - i)) & 1}
            cached = self.bdd.cube(assignment) if assignment else self.true
            if len(self._eq_cache) < 200_000:
                self._eq_cache[key] = cached
        return cached

    def eq(self, name: str, value: int) -> Function:
        return self.masked(name, value)

    def one_of(self, name: str, values: Iterable[int]) -> Function:
        result = self.false
        for value in values:
            result |= self.eq(name, value)
        return result

    def at_most(self, name: str, bound: int) -> Function:
        """field <= bound (unsigned)."""
        bits = self.fields[name]
        if bound >= (1 << bits.width) - 1:
            return self.true
        if bound < 0:
            return self.false
        result = self.true  # equal so far on the bits below
        for i in range(bits.width):  # least significant first
            var = self.bdd.var(bits.names[bits.width - 1 - i])
            if (bound >> i) & 1:
                result = ~var | result
            else:
                result = ~var & result
        return result

    def in_range(self, name: str, low: int, high: int) -> Function:
        if low > high:
            return self.false
        return self.at_most(name, high) & ~self.at_most(name, low - 1)

    def same(self, a: str, b: str) -> Function:
        """Fields `a` and `b` are equal (they must be interleaved for this to stay small)."""
        result = self.true
        for x, y in zip(reversed(self.fields[a].names), reversed(self.fields[b].names)):
            vx, vy = self.bdd.var(x), self.bdd.var(y)
            result &= s_equiv(self.bdd, vx, vy)
        return result

    def forget(self, u: Function, names: Iterable[str]) -> Function:
        """Existential quantification of whole fields."""
        key = tuple(names)
        variables = self._var_sets.get(key)
        if variables is None:
            variables = self._var_sets[key] = {var for name in key for var in self.fields[name].names}
        return self.bdd.exist(variables, u) if variables else u

    def forget_bits(self, u: Function, name: str, mask: int) -> Function:
        bits = self.fields[name]
        variables = {var for i, var in enumerate(bits.names) if (mask >> (bits.width - 1 - i)) & 1}
        return self.bdd.exist(variables, u) if variables else u

    def assign(self, u: Function, name: str, value: int, mask: int | None = None) -> Function:
        """The packets of `u` with field `name` (its `mask` bits) overwritten by `value`."""
        bits = self.fields[name]
        mask = (1 << bits.width) - 1 if mask is None else mask
        return self.forget_bits(u, name, mask) & self.masked(name, value, mask)

    def move(self, u: Function, source: str, target: str) -> Function:
        """Copy field `source` into `target` (forgetting target's old value and source)."""
        u = self.forget(u, [target])
        renaming = dict(zip(self.fields[source].names, self.fields[target].names))
        return self.bdd.let(renaming, u)

    def replies_to(self, u: Function) -> Function:
        """The replies a connection tracker expects for the connections of `u` (5-tuples): for TCP
        and UDP the other way with addresses and ports swapped; for an ICMP query its reply type
        from the other end (echo request 8 -> echo reply 0, same code)."""
        icmp = self.eq("nw_proto", 1)
        result = self.reversed_direction(u & ~icmp)
        swapped_addresses: dict[str, str] = {}
        swapped_addresses.update(zip(self.fields["nw_src"].names, self.fields["nw_dst"].names))
        swapped_addresses.update(zip(self.fields["nw_dst"].names, self.fields["nw_src"].names))
        for query, reply in ICMP_REPLIES.items():
            queries = u & icmp & self.eq("tp_src", query)
            if queries != self.false:
                result |= self.assign(self.bdd.let(swapped_addresses, queries), "tp_src", reply)
        return result

    def reversed_direction(self, u: Function) -> Function:
        """The packets of `u` going the other way: source and destination address and port swapped."""
        swap: dict[str, str] = {}
        for a, b in (("nw_src", "nw_dst"), ("tp_src", "tp_dst")):
            swap.update(zip(self.fields[a].names, self.fields[b].names))
            swap.update(zip(self.fields[b].names, self.fields[a].names))
        return self.bdd.let(swap, u)

    # ---- reading sets -----------------------------------------------------------------------

    def pick(self, u: Function) -> dict[str, int] | None:
        """One packet of `u`, every field decoded (unconstrained bits read 0)."""
        if u == self.false:
            return None
        care = {var for bits in self.fields.values() for var in bits.names}
        assignment = self.bdd.pick(u, care_vars=care)
        return self.decode(assignment)

    def decode(self, assignment: Mapping[str, bool]) -> dict[str, int]:
        values: dict[str, int] = {}
        for name, bits in self.fields.items():
            value = 0
            for var in bits.names:
                value = (value << 1) | int(bool(assignment.get(var, False)))
            values[name] = value
        return values

    def nodes(self) -> int:
        return len(self.bdd)


def s_equiv(bdd: cudd.BDD, a: Function, b: Function) -> Function:
    return bdd.apply("<=>", a, b)


def universe(space: Space) -> Function:
    """The flow keys Open vSwitch can extract from some frame (see tests of `ovs_key`): fields
    of a protocol a frame does not carry are zero."""
    s = space
    ipv4, arp = s.eq("eth_type", ETH_IPV4), s.eq("eth_type", ETH_ARP)
    no_l3 = s.eq("nw_src", 0) & s.eq("nw_dst", 0) & s.eq("nw_proto", 0) & s.eq("frag", 0)
    no_l4 = s.eq("tp_src", 0) & s.eq("tp_dst", 0) & s.eq("tcp_flags", 0)
    no_arp_hw = s.eq("arp_sha", 0) & s.eq("arp_tha", 0)
    ethertype_ok = ~s.at_most("eth_type", 0x05FE)  # 802.3 frames read as 0x05ff, never less
    frag_ok = ~s.eq("frag", 2)  # "later" implies "any"
    later = s.eq("frag", 3)
    ports = s.one_of("nw_proto", PORT_PROTOCOLS)
    tcp, icmp = s.eq("nw_proto", 6), s.eq("nw_proto", 1)
    ip_l4 = ((later & no_l4)
             | (~later & tcp)
             | (~later & ports & ~tcp & s.eq("tcp_flags", 0))
             | (~later & icmp & s.at_most("tp_src", 255) & s.at_most("tp_dst", 255) & s.eq("tcp_flags", 0))
             | (~later & ~ports & ~icmp & no_l4))
    ip = ipv4 & frag_ok & ip_l4 & no_arp_hw
    # RARP (0x8035) is parsed exactly like ARP by Open vSwitch
    arp_key = (arp | s.eq("eth_type", ETH_RARP)) & s.at_most("nw_proto", 255) & s.eq("frag", 0) & no_l4
    other = ~ipv4 & ~arp & ~s.eq("eth_type", ETH_RARP) & no_l3 & no_l4 & no_arp_hw
    # an untagged key never shows a VLAN TPID as ethertype: Open vSwitch parses that header as the tag
    vlan_ok = (s.masked("vlan", VLAN_PRESENT, VLAN_PRESENT)
               | (s.eq("vlan", 0) & s.eq("pcp", 0) & ~s.one_of("eth_type", (0x8100, 0x88A8))))
    return ethertype_ok & (ip | arp_key | other) & vlan_ok
