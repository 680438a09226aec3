"""Operator decisions about links: approve a pending link, revoke an approval; stored and audited.

The declared links are the topology document's plus the approved ones. An approval names a
link that LLDP has actually crossed (a pending link), by its two ends: "SWITCH:PORT", where
SWITCH is a name from the topology document or the policy's `switches:`, or a datapath id.
Approvals live in the state directory (`links.json`, written atomically) and every decision
is a line in the audit log, like a policy version.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Callable

from controller.app.linkbook import LinkBook
from controller.app.store import PolicyStore
from controller.core.topology import Link, PortRef

log = logging.getLogger("otseg.links")
_END = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9_.\-]*):(\d+)\s*$")
LINKS_FILE = "links.json"


class LinkRequestError(ValueError):
    """A link approval or revocation that cannot be done (the message says why and how to fix it)."""


def parse_end(text: str, switch_names: dict[str, int]) -> PortRef:
    match = _END.match(text or "")
    if not match:
        raise LinkRequestError(f"{text!r} is not a link end: write SWITCH:PORT, e.g. ring-1:12 or 0xb:12")
    switch, port = match.group(1), int(match.group(2))
    if switch in switch_names:
        return PortRef(switch_names[switch], port)
    try:
        return PortRef(int(switch, 0), port)
    except ValueError:
        raise LinkRequestError(f"unknown switch {switch!r}: use a name ({', '.join(sorted(switch_names)) or 'none'}) "
                               "or a datapath id") from None


def load_approved(store: PolicyStore) -> frozenset[Link]:
    """The approved links; a missing file is none. An unreadable entry is left out (fail closed:
    that link is pending again) and said loudly, naming the file, so the operator can approve it again."""
    path = store.describe(LINKS_FILE)
    try:
        data = store.read(LINKS_FILE)
        if data is None:
            return frozenset()
        items = json.loads(data)
    except (OSError, ValueError) as error:
        log.error("%s cannot be read (%s): no approved link is trusted; approve them again with "
                  "`otseg links approve`", path, error)
        return frozenset()
    links = set()
    for index, item in enumerate(items if isinstance(items, list) else [items]):
        try:
            links.add(Link.between(PortRef(int(item["a"][0]), int(item["a"][1])),
                                   PortRef(int(item["b"][0]), int(item["b"][1]))))
        except (KeyError, TypeError, ValueError, IndexError):
            log.error("%s: entry %d is not a link (%r): left out, that link stays pending", path, index + 1, item)
    return frozenset(links)


class LinkControl:
    def __init__(self, book: LinkBook, store: PolicyStore, documented: frozenset[Link],
                 switch_names: dict[str, int], on_change: Callable[[frozenset[Link]], None], lock: Any) -> None:
        self.book = book
        self.store = store
        self.documented = documented
        self.switch_names = switch_names
        self.on_change = on_change
        self.lock = lock
        self.approved = load_approved(store) - documented

    def declared(self) -> frozenset[Link]:
        return self.documented | self.approved

    def reload(self) -> bool:
        """Read the approvals again (a cluster's store may hold ones another instance made)."""
        approved = load_approved(self.store) - self.documented
        if approved == self.approved:
            return False
        self.approved = approved
        self.book.declare(self.declared())
        self.on_change(self.declared())
        return True

    def listing(self) -> dict[str, Any]:
        summary = self.book.summary()
        approved = {(_end(l.a), _end(l.b)) for l in self.approved}
        for item in summary["declared"]:
            item["source"] = "approved" if (item["a"], item["b"]) in approved else "topology"
        return summary

    def approve(self, a_text: str, b_text: str, who: str) -> dict[str, Any]:
        link = self._link(a_text, b_text)
        with self.lock:
            if link in self.declared():
                raise LinkRequestError(f"link {_end(link.a)} <-> {_end(link.b)} is already declared")
            if link not in self.book.pending:
                pending = ", ".join(f"{_end(p.a)} {_end(p.b)}" for p in sorted(self.book.pending)) or "none"
                raise LinkRequestError(f"link {_end(link.a)} <-> {_end(link.b)} is not pending (LLDP has not crossed "
                                       f"it); pending links: {pending}")
            self._save(self.approved | {link})
            self.book.approve(link)
            record = self.store.audit(who=who, action="link-approve", link=[_end(link.a), _end(link.b)])
            self.on_change(self.declared())
        return {"approved": [_end(link.a), _end(link.b)], "audit": record}

    def revoke(self, a_text: str, b_text: str, who: str) -> dict[str, Any]:
        link = self._link(a_text, b_text)
        with self.lock:
            if link in self.documented:
                raise LinkRequestError(f"link {_end(link.a)} <-> {_end(link.b)} is in the topology document: "
                                       "remove it there")
            if link not in self.approved:
                raise LinkRequestError(f"link {_end(link.a)} <-> {_end(link.b)} was never approved")
            self._save(self.approved - {link})
            self.book.declare(self.declared())
            record = self.store.audit(who=who, action="link-revoke", link=[_end(link.a), _end(link.b)])
            self.on_change(self.declared())
        return {"revoked": [_end(link.a), _end(link.b)], "audit": record}

    def _link(self, a_text: str, b_text: str) -> Link:
        a, b = parse_end(a_text, self.switch_names), parse_end(b_text, self.switch_names)
        if a.dpid == b.dpid:
            raise LinkRequestError("a link joins two different switches")
        return Link.between(a, b)

    def _save(self, links: frozenset[Link]) -> None:
        """Stored first (a cluster store may refuse: then nothing changes here either)."""
        data = [{"a": [l.a.dpid, l.a.port], "b": [l.b.dpid, l.b.port]} for l in sorted(links)]
        self.store.write(LINKS_FILE, json.dumps(data, indent=1).encode())
        self.approved = links


def _end(where: PortRef) -> str:
    return f"{where.dpid:#x}:{where.port}"
