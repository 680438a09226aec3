"""Capability discovery at the switch edge: what a connected switch says it can do.

On connect the shell asks once for table features (OFPMP_TABLE_FEATURES, an empty request:
a read), group features, meter features, and opens then discards an ONF bundle. The replies
become a `SwitchFeatures` value in otseg's field names; `profiles.from_features` (pure) turns
it into the profile the compiler targets, unless the topology document states one.

A request the switch answers with an error, or leaves unanswered after `ATTEMPTS` tries,
counts as a capability it lacks (fail closed). Table features are decoded by
`table_features` (os-ken's own decoding took a second per Open vSwitch bridge).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from controller.app.requests import Unanswered
from controller.app.table_features import RawTableFeatures, TableFeaturesError
from controller.core.profiles import SwitchFeatures, TableFeature

log = logging.getLogger("otseg.capabilities")

PROBE_BUNDLE_ID = 0x0E5E0001
ATTEMPTS = 3  # a request that gets no answer is asked again (a busy loop, not a missing capability)


Request = Callable[[Any, Any], "list[Any] | None"]
Call = Callable[[Any, Any], "tuple[Any | None, str | None]"]


def read_features(datapath: Any, request: Request, call: Call) -> SwitchFeatures:
    """Ask the switch; each question it does not answer (after `ATTEMPTS` tries) is None in the result."""
    ofproto, parser = datapath.ofproto, datapath.ofproto_parser
    tables_reply = _patient(request, datapath, lambda: parser.OFPTableFeaturesStatsRequest(datapath, 0, []))
    tables = _tables(datapath, tables_reply) if tables_reply else None
    groups = _patient(request, datapath, lambda: parser.OFPGroupFeaturesStatsRequest(datapath, 0))
    group_types = ff_groups = None
    if groups:
        group = groups[0]
        group_types = group.types
        ff_groups = group.max_groups[ofproto.OFPGT_FF] if len(group.max_groups) > ofproto.OFPGT_FF else 0
    meters_reply = _patient(request, datapath, lambda: parser.OFPMeterFeaturesStatsRequest(datapath, 0))
    meters = meters_reply[0].max_meter if meters_reply else None
    return SwitchFeatures(tables, group_types, ff_groups, meters, _probe_bundle(datapath, call))


def _patient(request: Request, datapath: Any, message: Callable[[], Any]) -> list[Any] | None:
    """A read, asked again (a fresh message, a fresh xid) while it gets no answer in time."""
    for attempt in range(1, ATTEMPTS + 1):
        reply = request(datapath, message())
        if reply is not None:
            return reply
        log.warning("switch %#x did not answer %s in time (attempt %d of %d)", datapath.id,
                    type(message()).__name__, attempt, ATTEMPTS)
    return None


def _tables(datapath: Any, replies: list[Any]) -> tuple[TableFeature, ...] | None:
    bodies = [body for reply in replies for body in (reply if isinstance(reply, list) else [reply])]
    try:
        if not all(isinstance(body, RawTableFeatures) for body in bodies):
            raise TableFeaturesError("os-ken decoded the bodies itself: table_features.install() was not called")
        return tuple(body.feature() for body in bodies)
    except TableFeaturesError as error:
        log.error("switch %#x sent table features otseg cannot read (%s): counted as none", datapath.id, error)
        return None


def _probe_bundle(datapath: Any, call: Call) -> bool | None:
    ofproto, parser = datapath.ofproto, datapath.ofproto_parser
    flags = ofproto.ONF_BF_ATOMIC | ofproto.ONF_BF_ORDERED
    for attempt in range(ATTEMPTS):
        bundle_id = PROBE_BUNDLE_ID + attempt  # a late answer to an earlier try never counts for this one
        reply, error = call(datapath, parser.ONFBundleCtrlMsg(datapath, bundle_id, ofproto.ONF_BCT_OPEN_REQUEST,
                                                              flags, []))
        if reply is not None:
            call(datapath, parser.ONFBundleCtrlMsg(datapath, bundle_id, ofproto.ONF_BCT_DISCARD_REQUEST, flags, []))
            return True
        if not isinstance(error, Unanswered):
            log.info("switch %#x refused an ONF bundle (%s): updates will be make-before-break", datapath.id, error)
            return False
        log.warning("switch %#x did not answer a bundle probe in time (attempt %d of %d)", datapath.id,
                    attempt + 1, ATTEMPTS)
        # it may have opened it late: close it, so that it holds no bundle of ours
        call(datapath, parser.ONFBundleCtrlMsg(datapath, bundle_id, ofproto.ONF_BCT_DISCARD_REQUEST, flags, []))
    return None
