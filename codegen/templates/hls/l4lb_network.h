// l4lb_network.h -- the [network] table of the l4lb data plane: the return path and
// forwarding (model/network.py, docs/network.md), as a Vitis-HLS-style C++ library.
//
// Hand-written and config-independent (copied verbatim by codegen/hls.py, and only for a
// config with a [network] table, whose generated l4lb_config.h includes it). Every
// function is templated on the config struct and mirrors the model function named in
// the comment above it.
//
// Both lookups are register CAMs: `rev` (dip_capacity words) and `route`
// (route_capacity words) are partitioned completely by the kernel, every word is
// compared with the packet in the same cycle, and the winner is chosen by a fixed
// priority (lowest index) or a comparison tree (longest prefix, then lowest index).
#ifndef L4LB_NETWORK_H_
#define L4LB_NETWORK_H_

#include "ap_int.h"
#include "l4lb_core.h"

namespace l4lb {

// model.layout.Action.REVERSE: a server's reply, its source rewritten to the VIP
static const unsigned REVERSE = 6;
// model.network.PORT_BITS
static const unsigned PORT_BITS = 9;
static const unsigned ROUTE_LENGTH_BITS = 6;

// model.pipeline.Decision with the route (vector format 3): the fields of decision_t in
// the same order, then route_hit, route, port (model.pipeline.NETWORK_DECISION_FIELDS).
// A flat struct rather than a derived one, so that the AXI4-Stream payload is plain data.
template <class CONFIG_T> struct routed_decision_t {
    ap_uint<3> action;                         // action_t, or REVERSE
    typename CONFIG_T::vip_id_t vip_id;
    ap_uint<1> hit;
    typename CONFIG_T::stage_t stage;
    typename CONFIG_T::version_t version;
    ap_uint<1> transit_hit;
    typename CONFIG_T::slot_t slot;
    typename CONFIG_T::dip_index_t dip;        // REVERSE: the rev index
    ap_uint<32> dip_ip;                        // REVERSE: the VIP's address (new source)
    ap_uint<16> dip_port;                      // REVERSE: the VIP's port (new source)
    ap_uint<1> learn;
    ap_uint<1> close;
    ap_uint<32> cookie;                        // CHALLENGE: the SYN-ACK's ack number
    ap_uint<1> route_hit;                      // a route holds the frame's destination
    typename CONFIG_T::route_index_t route;    // its index in `route`
    ap_uint<PORT_BITS> port;                   // the port the frame leaves through
};

// model.pipeline.DataPlane.reverse_match: the lowest-indexed valid `rev` word equal to
// the packet's (src ip, src port, proto). A register CAM: all words compare at once.
template <class CONFIG_T>
bool rev_match(const typename CONFIG_T::rev_word_t rev[CONFIG_T::rev_depth], const key_t &key,
               typename CONFIG_T::dip_index_t &rev_index) {
    #pragma HLS INLINE
    bool found = false;
    rev_index = 0;
REV_ENTRIES:
    for (unsigned i = 0; i < CONFIG_T::rev_depth; i++) {
        #pragma HLS UNROLL
        const typename CONFIG_T::rev_word_t w = rev[i];
        const bool match =
            field<CONFIG_T::rev_valid_lsb, CONFIG_T::rev_valid_bits>(w) == 1 &&
            field<CONFIG_T::rev_dip_ip_lsb, CONFIG_T::rev_dip_ip_bits>(w) == key.src_ip &&
            field<CONFIG_T::rev_dip_port_lsb, CONFIG_T::rev_dip_port_bits>(w) == key.src_port &&
            field<CONFIG_T::rev_proto_lsb, CONFIG_T::rev_proto_bits>(w) == key.proto;
        if (match && !found) {
            found = true;
            rev_index = i;
        }
    }
    return found;
}

// model.pipeline.DataPlane.reverse_match: the REVERSE decision of `rev` word rev_index
template <class CONFIG_T>
decision_t<CONFIG_T> reverse_decision(const typename CONFIG_T::rev_word_t &w,
                                      const typename CONFIG_T::dip_index_t &rev_index) {
    #pragma HLS INLINE
    decision_t<CONFIG_T> d;
    d.action = REVERSE;
    d.vip_id = field<CONFIG_T::rev_vip_id_lsb, CONFIG_T::rev_vip_id_bits>(w);
    d.hit = 0;
    d.stage = 0;
    d.version = 0;
    d.transit_hit = 0;
    d.slot = 0;
    d.dip = rev_index;
    d.dip_ip = field<CONFIG_T::rev_vip_ip_lsb, CONFIG_T::rev_vip_ip_bits>(w);
    d.dip_port = field<CONFIG_T::rev_vip_port_lsb, CONFIG_T::rev_vip_port_bits>(w);
    d.learn = 0;
    d.close = 0;
    d.cookie = 0;
    return d;
}

// One leaf or inner node of the longest-prefix comparison tree.
template <class CONFIG_T> struct route_cand_t {
    bool match;
    ap_uint<ROUTE_LENGTH_BITS> length;
    typename CONFIG_T::route_index_t index;
    ap_uint<PORT_BITS> port;
};

// The top `length` bits of an IPv4 address (a thermometer decode of the length);
// lengths of 32 and more keep every bit.
inline ap_uint<32> prefix_mask(const ap_uint<ROUTE_LENGTH_BITS> &length) {
    #pragma HLS INLINE
    if (length >= 32) {
        return ap_uint<32>(0xFFFFFFFFu);
    }
    return ~(ap_uint<32>(0xFFFFFFFFu) >> length);
}

// model.pipeline.DataPlane.route_lookup: the valid `route` word with the longest prefix
// holding dst_ip, the lowest index among equally long ones. Every word is compared at
// once (a register CAM); the winner comes out of a binary tree of depth
// ceil(log2(route_depth)) in which the lower-indexed side keeps a tie, so at every node
// the result is the best route of its contiguous index range.
template <class CONFIG_T>
bool route_lookup(const typename CONFIG_T::route_word_t route[CONFIG_T::route_depth],
                  const ap_uint<32> &dst_ip, typename CONFIG_T::route_index_t &index,
                  ap_uint<PORT_BITS> &port) {
    #pragma HLS INLINE
    route_cand_t<CONFIG_T> cand[CONFIG_T::route_depth];
    #pragma HLS ARRAY_PARTITION variable=cand complete
ROUTE_ENTRIES:
    for (unsigned r = 0; r < CONFIG_T::route_depth; r++) {
        #pragma HLS UNROLL
        const typename CONFIG_T::route_word_t w = route[r];
        const ap_uint<ROUTE_LENGTH_BITS> length =
            field<CONFIG_T::route_length_lsb, CONFIG_T::route_length_bits>(w);
        const ap_uint<32> prefix =
            field<CONFIG_T::route_prefix_lsb, CONFIG_T::route_prefix_bits>(w);
        cand[r].match = field<CONFIG_T::route_valid_lsb, CONFIG_T::route_valid_bits>(w) == 1 &&
                        ((dst_ip ^ prefix) & prefix_mask(length)) == 0;
        cand[r].length = length;
        cand[r].index = r;
        cand[r].port = field<CONFIG_T::route_port_lsb, CONFIG_T::route_port_bits>(w);
    }
ROUTE_TREE_LEVELS:
    for (unsigned step = 1; step < CONFIG_T::route_depth; step *= 2) {
        #pragma HLS UNROLL
    ROUTE_TREE_NODES:
        for (unsigned k = 0; k + step < CONFIG_T::route_depth; k += 2 * step) {
            #pragma HLS UNROLL
            const route_cand_t<CONFIG_T> &lo = cand[k];        // indices k .. k+step-1
            const route_cand_t<CONFIG_T> &hi = cand[k + step]; // higher indices
            if (hi.match && (!lo.match || hi.length > lo.length)) {
                cand[k] = hi;
            }
        }
    }
    index = cand[0].match ? cand[0].index : typename CONFIG_T::route_index_t(0);
    port = cand[0].match ? cand[0].port : ap_uint<PORT_BITS>(0);
    return cand[0].match;
}

// model.pipeline.DataPlane.process, step 8: the destination an emitted frame is routed
// by -- the DIP for LB, the client (the packet's source) for CHALLENGE, the packet's
// destination for FORWARD and REVERSE; DROP, VERIFY and UNVERIFIED emit nothing.
template <class CONFIG_T>
bool routed_destination(const decision_t<CONFIG_T> &d, const key_t &key, ap_uint<32> &dst_ip) {
    #pragma HLS INLINE
    dst_ip = d.action == LB ? d.dip_ip : d.action == CHALLENGE ? key.src_ip : key.dst_ip;
    return d.action == FORWARD || d.action == LB || d.action == REVERSE ||
           d.action == CHALLENGE;
}

// model.pipeline.DataPlane.process: the decision with its route (zero when not routed)
template <class CONFIG_T>
routed_decision_t<CONFIG_T> with_route(const decision_t<CONFIG_T> &d, bool route_hit,
                                       const typename CONFIG_T::route_index_t &route,
                                       const ap_uint<PORT_BITS> &port) {
    #pragma HLS INLINE
    routed_decision_t<CONFIG_T> r;
    r.action = d.action;
    r.vip_id = d.vip_id;
    r.hit = d.hit;
    r.stage = d.stage;
    r.version = d.version;
    r.transit_hit = d.transit_hit;
    r.slot = d.slot;
    r.dip = d.dip;
    r.dip_ip = d.dip_ip;
    r.dip_port = d.dip_port;
    r.learn = d.learn;
    r.close = d.close;
    r.cookie = d.cookie;
    r.route_hit = route_hit;
    r.route = route_hit ? route : typename CONFIG_T::route_index_t(0);
    r.port = route_hit ? port : ap_uint<PORT_BITS>(0);
    return r;
}

// The emitted header (model.pipeline.Decision.out_dst, l4lb::dnat) and, for REVERSE,
// the source rewritten to the VIP (model.frame.rewrite_source).
template <class CONFIG_T> packet_t nat(const packet_t &pkt, const decision_t<CONFIG_T> &d) {
    #pragma HLS INLINE
    packet_t out = dnat<CONFIG_T>(pkt, d);
    if (d.action == REVERSE) {
        out.key.src_ip = d.dip_ip;
        out.key.src_port = d.dip_port;
    }
    return out;
}

} // namespace l4lb

#endif // L4LB_NETWORK_H_
