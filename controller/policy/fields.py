"""Typed readers for single fields of a positioned tree; each reports into a Collector.

Every reader returns None after reporting, so the validator can continue and find
every other error of the document in the same pass.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Iterable

from controller.policy.diagnostics import Collector, did_you_mean
from controller.policy.nodes import Mapping, Node, Scalar, Sequence, kind_of

_MAC = re.compile(r"^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}$")
_DPID_COLON = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){7}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$")
MAX_DPID = 2**64 - 1
MAX_PORT = 0xFFFFFF00


class Reader:
    """Field readers bound to one document's collector."""

    def __init__(self, collector: Collector) -> None:
        self.c = collector

    def mapping(self, node: Node | None, context: str, what: str) -> Mapping | None:
        if isinstance(node, Mapping):
            return node
        if node is not None:
            self.c.error(node.mark, context, f"{what} must be a mapping (key: value), not {kind_of(node)}")
        return None

    def keys(self, node: Mapping, context: str, allowed: Iterable[str], required: Iterable[str] = ()) -> None:
        allowed_set = set(allowed)
        for key, _ in node.items:
            if key.text not in allowed_set:
                self.c.error(key.mark, context, f"unknown key {key.text!r}",
                             did_you_mean(key.text, allowed_set) or "allowed: " + ", ".join(sorted(allowed_set)))
        for name in required:
            if node.get(name) is None and node.key_node(name) is None:
                self.c.error(node.mark, context, f"missing required key {name!r}")

    def name(self, key: Scalar, context: str, what: str) -> str | None:
        if not _NAME.match(key.text):
            self.c.error(key.mark, context, f"invalid {what} name {key.text!r}",
                         "use letters, digits, '-', '_' or '.', starting with a letter or digit, at most 63")
            return None
        return key.text

    def text(self, node: Node | None, context: str, what: str) -> str | None:
        if node is None:
            return None
        if isinstance(node, Scalar) and node.value is not None and not isinstance(node.value, (bool, list, dict)):
            return node.text
        self.c.error(node.mark, context, f"{what} must be text, not {kind_of(node)}")
        return None

    def integer(self, node: Node | None, context: str, what: str, low: int, high: int) -> int | None:
        if node is None:
            return None
        value = _as_int(node)
        if value is None:
            self.c.error(node.mark, context, f"{what} must be a whole number, not {kind_of(node)}")
            return None
        if not low <= value <= high:
            self.c.error(node.mark, context, f"{what} {value} is out of range", f"allowed: {low} to {high}")
            return None
        return value

    def number(self, node: Node | None, context: str, what: str, low: float, high: float) -> float | None:
        if node is None:
            return None
        value = node.value if isinstance(node, Scalar) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.c.error(node.mark, context, f"{what} must be a number, not {kind_of(node)}")
            return None
        if not low <= value <= high:
            self.c.error(node.mark, context, f"{what} {value} is out of range", f"allowed: {low:g} to {high:g}")
            return None
        return float(value)

    def boolean(self, node: Node | None, context: str, what: str) -> bool | None:
        if node is None:
            return None
        if isinstance(node, Scalar) and isinstance(node.value, bool):
            return node.value
        self.c.error(node.mark, context, f"{what} must be true or false, not {kind_of(node)}")
        return None

    def choice(self, node: Node | None, context: str, what: str, choices: Iterable[str]) -> str | None:
        text = self.text(node, context, what)
        if text is None:
            return None
        options = sorted(choices)
        if text not in options:
            assert node is not None
            self.c.error(node.mark, context, f"{what} {text!r} is not one of {', '.join(options)}",
                         did_you_mean(text, options))
            return None
        return text

    def name_list(self, node: Node | None, context: str, what: str) -> list[Scalar] | None:
        """A name or a non-empty list of names."""
        if node is None:
            return None
        items = list(node.items) if isinstance(node, Sequence) else [node]
        if not items:
            self.c.error(node.mark, context, f"{what} is an empty list", "name at least one")
            return None
        names: list[Scalar] = []
        for item in items:
            if isinstance(item, Scalar) and isinstance(item.value, str) and item.text:
                names.append(item)
            else:
                self.c.error(item.mark, context, f"{what} entries must be names, not {kind_of(item)}")
        return names

    def mac(self, node: Node | None, context: str) -> str | None:
        if node is None:
            return None
        text = node.text if isinstance(node, Scalar) else ""
        if not isinstance(node, Scalar) or not _MAC.match(text):
            self.c.error(node.mark, context, f"invalid MAC address {text or kind_of(node)!r}",
                         "write six hex octets in quotes, like \"00:00:00:00:02:01\"")
            return None
        mac = text.lower().replace("-", ":")
        first = int(mac[:2], 16)
        if first & 1:
            self.c.error(node.mark, context, f"MAC address {mac} is a multicast/broadcast address",
                         "an asset needs its unicast station address")
            return None
        if mac == "00:00:00:00:00:00":
            self.c.error(node.mark, context, "MAC address 00:00:00:00:00:00 is not a station address")
            return None
        return mac

    def ipv4(self, node: Node | None, context: str) -> str | None:
        if node is None:
            return None
        text = node.text if isinstance(node, Scalar) else ""
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            self.c.error(node.mark, context, f"invalid IP address {text or kind_of(node)!r}",
                         "write a dotted IPv4 address like 10.0.2.1")
            return None
        if address.version != 4:
            self.c.error(node.mark, context, f"IPv6 address {text} is not supported", "use the IPv4 address")
            return None
        if address.is_multicast or address.is_unspecified or text == "255.255.255.255" or address.is_loopback:
            self.c.error(node.mark, context, f"IP address {text} cannot belong to a device",
                         "use the device's unicast address")
            return None
        return str(address)

    def dpid(self, node: Node | None, context: str) -> int | None:
        """A datapath id: an integer, "0x3", or "00:00:00:00:00:00:00:03"."""
        if node is None:
            return None
        value: int | None = None
        if isinstance(node, Scalar):
            text = node.text.strip()
            if _DPID_COLON.match(text):
                value = int(text.replace(":", ""), 16)
            elif isinstance(node.value, int) and not isinstance(node.value, bool) and not ":" in text:
                value = node.value
            elif re.fullmatch(r"0[xX][0-9a-fA-F]{1,16}", text):
                value = int(text, 16)
            elif text.isdigit():
                value = int(text)
        if value is None or not 1 <= value <= MAX_DPID:
            self.c.error(node.mark, context, f"invalid datapath id {getattr(node, 'text', kind_of(node))!r}",
                         "write an integer, \"0x3\" or \"00:00:00:00:00:00:00:03\" (non-zero)")
            return None
        return value


def _as_int(node: Node) -> int | None:
    if not isinstance(node, Scalar) or isinstance(node.value, bool):
        return None
    if isinstance(node.value, int):
        return node.value
    if isinstance(node.value, str):
        text = node.value.strip()
        if re.fullmatch(r"0[xX][0-9a-fA-F]+", text):
            return int(text, 16)
        if text.isdigit():
            return int(text)
    return None


def as_int(node: Node) -> int | None:
    return _as_int(node)
