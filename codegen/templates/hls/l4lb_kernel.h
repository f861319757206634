// l4lb_kernel.h -- the top function of the l4lb HLS kernel and its stream payloads.
//
// Hand-written and config-independent (copied verbatim by codegen/hls.py); the
// geometry comes from the generated l4lb_config.h.
#ifndef L4LB_KERNEL_H_
#define L4LB_KERNEL_H_

#include "hls_stream.h"
#include "l4lb_config.h"

typedef l4lb::packet_t packet_t;
typedef l4lb::command_t<l4lb_config> command_t;
typedef l4lb::decision_t<l4lb_config> decision_t;
typedef l4lb::learn_t<l4lb_config> learn_t;

// One command per call: a table write is applied, or a packet is decided and emitted
// as one packet_t (destination rewritten), one decision_t and, when the decision has
// learn or close set, one learn_t. With a lifecycle (L4LB_LIFECYCLE, set by the
// generated config) an OP_READ command puts the word it names on rd_out.
#ifdef L4LB_LIFECYCLE
void l4lb_kernel(hls::stream<command_t> &cmd_in, hls::stream<packet_t> &pkt_out,
                 hls::stream<decision_t> &dec_out, hls::stream<learn_t> &learn_out,
                 hls::stream<l4lb_config::wr_data_t> &rd_out);
#else
void l4lb_kernel(hls::stream<command_t> &cmd_in, hls::stream<packet_t> &pkt_out,
                 hls::stream<decision_t> &dec_out, hls::stream<learn_t> &learn_out);
#endif

#endif // L4LB_KERNEL_H_
