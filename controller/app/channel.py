"""One connected switch, reached through os-ken: read our flows and meters, send a plan.

Sends are ordered make-before-break (meters, then adds, then modifies, then deletes) and
confirmed by a barrier; OpenFlow errors are matched to the messages of the batch by xid,
so a refused change raises ApplyError instead of being assumed installed. The barrier
reply is awaited through the app's own event queue, which also carries the errors: when
the app sees the reply, every error sent before it has been seen too.
"""

from __future__ import annotations

from typing import Any, Callable

from controller.app.enforcer import ApplyError
from controller.app.switch_state import ConnectionLost
from controller.app.ofp_edge import (
    flow_from_stats, flow_mod, group_from_stats, group_mod, meter_from_stats, meter_mod,
)
from controller.core.diff import OWNED_TABLES, SwitchPlan, is_foreign, is_our_group, is_ours
from controller.core.pipeline import TABLE_IDS
from controller.core.staging import stages
from controller.core.flows import Flow, Group, Meter


class OsKenChannel:
    def __init__(self, datapath: Any, request: Callable[[Any, Any], list[Any] | None],
                 barrier: Callable[[Any, set[int]], list[str]],
                 call: Callable[[Any, Any], tuple[Any | None, str | None]],
                 may_write: Callable[[], bool] = lambda: True) -> None:
        self.datapath = datapath
        # Cluster mode: only while the switch has confirmed us as its master (roles.py).
        self.may_write = may_write
        self._send_request = request
        self._call = call
        self.bundles = True  # until the switch refuses to open one
        self.dpid: int = datapath.id
        self._barrier = barrier

    def _request(self, message: Any) -> list[Any]:
        bodies = self._send_request(self.datapath, message)
        if bodies is None:
            if not getattr(self.datapath, "is_active", True):
                raise ConnectionLost(f"connection closed during {type(message).__name__}")
            raise ApplyError(f"no reply to {type(message).__name__}")
        return bodies

    def read_flows(self) -> list[Flow]:
        ofproto, parser = self.datapath.ofproto, self.datapath.ofproto_parser
        """Ours, and any other flow in the tables otseg owns (foreign: to be removed or kept)."""
        request = parser.OFPFlowStatsRequest(self.datapath, 0, ofproto.OFPTT_ALL, ofproto.OFPP_ANY, ofproto.OFPG_ANY,
                                             0, 0, parser.OFPMatch())
        flows = [flow_from_stats(stats) for stats in self._request(request)]
        return [flow for flow in flows if is_ours(flow) or is_foreign(flow)]

    def read_meters(self) -> list[Meter]:
        ofproto, parser = self.datapath.ofproto, self.datapath.ofproto_parser
        request = parser.OFPMeterConfigStatsRequest(self.datapath, 0, ofproto.OFPM_ALL)
        meters = [meter_from_stats(config) for config in self._request(request)]
        return [m for m in meters if m is not None]

    def read_groups(self) -> list[Group]:
        parser = self.datapath.ofproto_parser
        request = parser.OFPGroupDescStatsRequest(self.datapath, 0)
        groups = [group_from_stats(desc) for desc in self._request(request)]
        return [g for g in groups if g is not None and is_our_group(g)]

    def send(self, plan: SwitchPlan) -> None:
        """Meters and new groups first; all flow changes in one atomic bundle (where the switch
        supports ONF bundles), else in make-before-break stages (controller/core/staging.py), each
        confirmed by a barrier; unused groups last."""
        dp = self.datapath
        before = ([meter_mod(dp, m, "add") for m in plan.meters_add]
                  + [meter_mod(dp, m, "modify") for m in plan.meters_modify]
                  + [group_mod(dp, g, "add") for g in plan.groups_add]
                  + [group_mod(dp, g, "modify") for g in plan.groups_modify])
        # A cookie change goes as an add, which overwrites the flow with its new cookie (an
        # OpenFlow 1.3 modify keeps the old one); inside the bundle it is atomic like the rest.
        flows = ([flow_mod(dp, f, "add") for f in plan.flows.add]
                 + [flow_mod(dp, f, "modify") for f in plan.flows.modify]
                 + [flow_mod(dp, f, "add") for f in plan.flows.replace]
                 + [flow_mod(dp, f, "delete") for f in plan.flows.delete])
        after = [group_mod(dp, g, "delete") for g in plan.groups_delete]
        if before:
            self._send_confirmed(before)
        if flows:
            if plan.atomic and self.bundles and self._open_bundle():
                self._send_bundle(flows)
            elif plan.atomic:
                # Planned for a bundle (no version tags): sent piecemeal it could mix old and new
                # entries. Nothing was sent; the enforcer re-plans make-before-break.
                raise ApplyError("the switch refused an ONF bundle: the update is retried make-before-break")
            else:
                for batch in stages(plan.flows, plan.folded):
                    self._send_confirmed([flow_mod(dp, f, "delete" if op == "delete" else
                                                   "modify" if op == "modify" else "add") for op, f in batch])
        if after:
            self._send_confirmed(after)

    def rewrite(self, plan: SwitchPlan) -> None:
        """For a switch whose flows cannot be read (a foreign flow os-ken cannot parse makes the
        whole flow-stats reply unreadable): meters and groups first, then one atomic bundle that
        empties tables 0-3 and adds every flow of `plan` (all desired flows). Hitless: the
        switch swaps the tables at commit. Without bundles it cannot be done safely: refused."""
        dp = self.datapath
        ofproto, parser = dp.ofproto, dp.ofproto_parser
        before = ([meter_mod(dp, m, "add") for m in plan.meters_add]
                  + [meter_mod(dp, m, "modify") for m in plan.meters_modify]
                  + [group_mod(dp, g, "add") for g in plan.groups_add]
                  + [group_mod(dp, g, "modify") for g in plan.groups_modify])
        if before:
            self._send_confirmed(before)
        if not (self.bundles and self._open_bundle()):
            raise ApplyError("its flows cannot be read, and without bundles they cannot be replaced atomically")
        wipe = [parser.OFPFlowMod(dp, cookie=0, cookie_mask=0, table_id=TABLE_IDS[name], command=ofproto.OFPFC_DELETE,
                                  out_port=ofproto.OFPP_ANY, out_group=ofproto.OFPG_ANY, match=parser.OFPMatch())
                for name in OWNED_TABLES]
        self._send_bundle(wipe + [flow_mod(dp, f, "add") for f in plan.flows.add])

    def _writing(self) -> None:
        if not self.may_write():
            raise ApplyError("this instance is not the switch's OpenFlow master (cluster follower, or deposed): "
                             "nothing was sent")

    def _send_confirmed(self, messages: list[Any]) -> None:
        self._writing()
        xids: set[int] = set()
        for message in messages:
            self.datapath.set_xid(message)
            xids.add(message.xid)
            if not self.datapath.send_msg(message):
                raise ApplyError("connection lost while sending")
        refused = self._barrier(self.datapath, xids)
        if refused:
            raise ApplyError("; ".join(refused[:5]) + (f" (+{len(refused) - 5} more)" if len(refused) > 5 else ""))

    def _bundle_ctrl(self, kind: str) -> tuple[Any | None, str | None]:
        ofproto, parser = self.datapath.ofproto, self.datapath.ofproto_parser
        self._writing()
        types = {"open": ofproto.ONF_BCT_OPEN_REQUEST, "commit": ofproto.ONF_BCT_COMMIT_REQUEST,
                 "discard": ofproto.ONF_BCT_DISCARD_REQUEST}
        message = parser.ONFBundleCtrlMsg(self.datapath, self._bundle_id, types[kind],
                                          ofproto.ONF_BF_ATOMIC | ofproto.ONF_BF_ORDERED, [])
        return self._call(self.datapath, message)

    def _open_bundle(self) -> bool:
        self._bundle_id = (getattr(self, "_bundle_id", 0) + 1) & 0xFFFFFFFF
        reply, error = self._bundle_ctrl("open")
        if reply is None:
            if error and not error.startswith("no answer"):
                self.bundles = False  # refused: no bundles here; make-before-break from now on
            return False
        return True

    def _send_bundle(self, messages: list[Any]) -> None:
        """Add every message to the open bundle; commit only if none was refused on the way in."""
        ofproto, parser = self.datapath.ofproto, self.datapath.ofproto_parser
        wrapped = [parser.ONFBundleAddMsg(self.datapath, self._bundle_id,
                                          ofproto.ONF_BF_ATOMIC | ofproto.ONF_BF_ORDERED, m, []) for m in messages]
        try:
            self._send_confirmed(wrapped)
        except ApplyError:
            self._bundle_ctrl("discard")
            raise
        reply, error = self._bundle_ctrl("commit")
        if reply is None:
            raise ApplyError(f"bundle commit refused: {error}")
