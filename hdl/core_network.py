"""The ``[network]`` table's stages in the core (:class:`~hdl.core.L4LBCore`).

The return path and the routing of every decision, around the core's pipeline
(``D`` is the decision stage, docs/rtl.md "The network table")::

    stage K = D - rev.latency   ReverseTable lookup of the packet's source  | rev writes
    stage D                     a packet that matched no VIP but a DIP: REVERSE
    D + 1                       the decision registered, its destination chosen
    D + 1 .. D + route_delay    RouteTable: longest-prefix match             | route writes
    retire                      route_hit, route, port filled in

A ``rev`` write lands at stage ``K`` and a ``route`` write at ``D``, as the op ahead of
it is looked up, so both keep the core's ordering of writes against packets. This is
the core's code for these stages, kept out of :mod:`hdl.core` so that a config without a
``[network]`` does not read it; the tables themselves are :mod:`hdl.network`.
"""

from collections.abc import Callable, Mapping, Sequence

from amaranth.hdl import Module, Mux, ResetSignal, Signal
from amaranth.lib import data

from model.config import Geometry, Network
from model.layout import Action

from .layouts import learn_layout
from .network import ReverseTable, RouteTable

__all__ = ["NetworkStages"]


class NetworkStages:
    """Stage numbers, tables and elaboration of the ``[network]`` part of the core.

    Parameters
    ----------
    geo : Geometry
        The core's geometry (``dip_capacity`` sizes the ``rev`` table).
    net : Network
        An enabled ``[network]`` section.
    images : mapping of str to sequence of int
        Power-on words by memory name (``rev`` and ``route`` among them are used).
    """

    def __init__(self, geo: Geometry, net: Network, images: Mapping[str, Sequence[int]]):
        assert net.enabled
        self.geo, self.net = geo, net
        self.images = images

    @staticmethod
    def delay_for(net: Network) -> int:
        """Cycles a decision spends after stage ``D`` being routed (one register, then
        :class:`~hdl.network.RouteTable`)."""
        return 1 + RouteTable.latency_for(net.route_capacity)

    @property
    def delay(self) -> int:
        """:meth:`delay_for` this section."""
        return self.delay_for(self.net)

    def add_tables(self, m: Module, decision_stage: int) -> None:
        """Build the two tables as submodules ``rev`` and ``route`` of ``m``; the ``rev``
        lookup stage ``K`` is placed so that its result arrives at ``decision_stage``."""
        self.rev = ReverseTable(self.geo, self.images.get("rev"))
        self.route = RouteTable(self.net.route_capacity, self.images.get("route"))
        #: the rev lookup, whose result arrives with the decision
        self.K = decision_stage - self.rev.latency
        assert self.K >= 0 and 1 + self.route.latency == self.delay
        m.submodules.rev = self.rev
        m.submodules.route = self.route

    def lookup(self, m: Module, st: Sequence, write_to: Callable) -> None:
        """Stage ``K``: the return path's lookup of the packet's source (result at ``D``);
        a ``rev`` write is applied here."""
        rev, K = self.rev, self.K
        sk = st[K]
        m.d.comb += [
            rev.src_ip.eq(sk.op.pkt.key.src_ip),
            rev.src_port.eq(sk.op.pkt.key.src_port),
            rev.proto.eq(sk.op.pkt.key.proto),
            rev.w_en.eq(write_to(K, "rev")),
            rev.w_addr.eq(sk.op.wr.addr),
            rev.w_data.eq(sk.op.wr.data),
        ]

    def reverse(self, m: Module, dec, slot) -> None:
        """Stage ``D``: a server's reply (no VIP, the source is a DIP) becomes REVERSE;
        the route fields are 0 until :meth:`route_decision` fills them in. These
        statements follow the core's decision."""
        rev = self.rev
        m.d.comb += [dec.route_hit.eq(0), dec.route.eq(0), dec.port.eq(0)]
        with m.If(~slot.vip_hit & rev.hit):
            m.d.comb += [
                dec.action.eq(Action.REVERSE),
                dec.vip_id.eq(rev.vip_id),
                dec.dip.eq(rev.index),
                dec.dip_ip.eq(rev.vip_ip),
                dec.dip_port.eq(rev.vip_port),
            ]

    def route_decision(self, m: Module, dec, event, slot, is_pkt, write_to: Callable,
                       decision_stage: int, rdata_width: int | None):
        """``D + 1 .. D + delay``: the decision (with its learn event, and a
        control-plane read's answer when ``rdata_width`` is given) travels ``delay``
        registers while it is routed. Returns the last of them (``pkt``, ``rd``,
        ``event``, ``rdata`` fields) and the routed decision, both of which retire."""
        route = self.route
        p6 = slot.op.pkt
        tail_layout = data.StructLayout({
            "pkt": 1,      # a packet's decision (retires at the end)
            "rd": 1,       # a control-plane read's answer
            "routed": 1,   # an emitted frame: FORWARD, LB, REVERSE, CHALLENGE
            "dst": 32,     # what it is routed by
            "dec": dec.shape(),
            "event": learn_layout(self.geo),
            **({"rdata": rdata_width} if rdata_width is not None else {}),
        })
        n_tail = self.delay
        tail = [Signal(tail_layout, name=f"tail{k}", reset_less=True)
                for k in range(n_tail)]
        routed = ~((dec.action == Action.DROP) | (dec.action == Action.VERIFY)
                   | (dec.action == Action.UNVERIFIED))
        m.d.sync += [
            tail[0].pkt.eq(is_pkt(decision_stage)),
            tail[0].routed.eq(routed),
            tail[0].dst.eq(Mux(dec.action == Action.CHALLENGE, p6.key.src_ip,
                               dec.out_dst_ip)),
            tail[0].dec.eq(dec),
            tail[0].event.eq(event),
        ]
        if rdata_width is not None:
            m.d.sync += [tail[0].rd.eq(slot.valid & slot.is_rd),
                         tail[0].rdata.eq(slot.rdata)]
        for k in range(1, n_tail):
            m.d.sync += tail[k].eq(tail[k - 1])
        with m.If(ResetSignal()):
            m.d.sync += [t.pkt.eq(0) for t in tail] + [t.rd.eq(0) for t in tail]
        # a route write lands as the op ahead of it is looked up: ordered like a packet
        m.d.comb += [
            route.dst_ip.eq(tail[0].dst),
            route.w_en.eq(write_to(decision_stage, "route")),
            route.w_addr.eq(slot.op.wr.addr),
            route.w_data.eq(slot.op.wr.data),
        ]
        last = tail[-1]
        dec_routed = Signal.like(dec)
        go = Signal()
        m.d.comb += [
            go.eq(last.routed & route.hit),
            dec_routed.eq(last.dec),
            dec_routed.route_hit.eq(go),
            dec_routed.route.eq(Mux(go, route.index, 0)),
            dec_routed.port.eq(Mux(go, route.port, 0)),
        ]
        return last, dec_routed
