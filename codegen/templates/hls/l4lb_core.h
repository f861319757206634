// l4lb_core.h -- the l4lb data plane as a Vitis-HLS-style C++ library.
//
// Hand-written and config-independent (this file is copied verbatim by codegen/hls.py).
// Every function is templated on a config struct CONFIG_T (the generated
// l4lb_config.h) in the style of hls4ml's nnet_utils, and mirrors one function of the
// golden model named in the comment above it. The model (model/*.py) is the
// specification; the vectors of model.vectors are the contract.
//
// Synthesizable subset only: ap_uint types, fixed-bound loops (all unrolled), no
// dynamic memory, no file I/O.
#ifndef L4LB_CORE_H_
#define L4LB_CORE_H_

#include "ap_int.h"

namespace l4lb {

// ---- constants of the specification ------------------------------------------------

// model.hashing.FIELDS: the key fields, numbered in canonical (header) order
enum key_field_t { SRC_IP = 0, DST_IP = 1, SRC_PORT = 2, DST_PORT = 3, PROTO = 4 };
static const unsigned N_KEY_FIELDS = 5;
static const unsigned KEY_BITS = 104;               // model.config.KEY_BITS
static const unsigned SALT_BITS = 32;
static const unsigned MSG_BITS = SALT_BITS + KEY_BITS; // model.hashing.hash_bytes: 17 bytes
static const unsigned MSG_BYTES = MSG_BITS / 8;
static const unsigned CRC32_POLY_REFLECTED = 0xEDB88320u; // 0x04C11DB7, bit-reversed (zlib)
static const unsigned CRC32_INIT = 0xFFFFFFFFu;
static const unsigned CRC32_XOROUT = 0xFFFFFFFFu;

// model.layout.Action (CHALLENGE, VERIFY, UNVERIFIED: SYN authentication, lifecycle
// configs only)
enum action_t { FORWARD = 0, LB = 1, DROP = 2, CHALLENGE = 3, VERIFY = 4, UNVERIFIED = 5 };
// model.layout.Phase
enum phase_t { IDLE = 0, RECORD = 1, FLIP = 2 };
// model.pipeline: TCP flags and protocol number tested for `close`
static const unsigned TCP_FIN = 0x01;
static const unsigned TCP_SYN = 0x02;
static const unsigned TCP_RST = 0x04;
static const unsigned TCP_ACK = 0x10;
static const unsigned PROTO_TCP = 6;

// What a command on the input stream carries (see command_t). OP_READ (lifecycle
// configs): a control-plane read, answered with the word on the read stream.
enum op_t { OP_PACKET = 0, OP_WRITE = 1, OP_READ = 2 };

// ---- stream payloads ---------------------------------------------------------------

// model.hashing.FiveTuple
struct key_t {
    ap_uint<32> src_ip;
    ap_uint<32> dst_ip;
    ap_uint<16> src_port;
    ap_uint<16> dst_port;
    ap_uint<8> proto;
};

// model.pipeline.Packet: the parsed header vector the data plane sees (seq and ack:
// the TCP sequence and acknowledgement numbers, read by SYN authentication)
struct packet_t {
    key_t key;
    ap_uint<8> tcp_flags;
    ap_uint<32> seq;
    ap_uint<32> ack;
};

// One input command: a packet, or a control-plane write (model.layout.Memories.write)
// that lands between the packets before and after it. A single ordered stream keeps
// the order of vectors.txt exactly, in C simulation and in RTL.
template <class CONFIG_T> struct command_t {
    ap_uint<2> op;                             // op_t
    packet_t pkt;                              // op == OP_PACKET
    typename CONFIG_T::mem_id_t mem;           // op == OP_WRITE: memory (CONFIG_T::mem_*)
    typename CONFIG_T::wr_addr_t addr;         //   word address (also OP_READ's)
    typename CONFIG_T::wr_data_t data;         //   word, zero-extended
};

// model.pipeline.Decision: the vector-file columns, in declaration order
template <class CONFIG_T> struct decision_t {
    ap_uint<3> action;                         // action_t
    typename CONFIG_T::vip_id_t vip_id;
    ap_uint<1> hit;
    typename CONFIG_T::stage_t stage;
    typename CONFIG_T::version_t version;
    ap_uint<1> transit_hit;
    typename CONFIG_T::slot_t slot;
    typename CONFIG_T::dip_index_t dip;
    ap_uint<32> dip_ip;
    ap_uint<16> dip_port;
    ap_uint<1> learn;
    ap_uint<1> close;
    ap_uint<32> cookie;                        // CHALLENGE: the SYN-ACK's ack number
};

// model.controlplane.ControlPlane.observe: the learn/close report of one decision
template <class CONFIG_T> struct learn_t {
    key_t key;
    typename CONFIG_T::vip_id_t vip_id;
    typename CONFIG_T::version_t version;
    ap_uint<1> learn;
    ap_uint<1> close;
};

// One hash role of model.hashing: its salt and FIELD_ORDERS entry.
struct hash_role_t {
    unsigned salt;
    key_field_t fields[N_KEY_FIELDS];
};

// ---- model.layout: word fields -----------------------------------------------------

// Bits [LSB, LSB + BITS) of a memory word (one field of a model.layout word).
template <unsigned LSB, unsigned BITS, int W> ap_uint<BITS> field(const ap_uint<W> &word) {
    #pragma HLS INLINE
    return word.range(LSB + BITS - 1, LSB);
}

// model.layout.unpack_vip_state
template <class CONFIG_T> struct vip_state_t {
    ap_uint<2> phase;
    typename CONFIG_T::version_t old_version;
    typename CONFIG_T::version_t cur_version;
};

template <class CONFIG_T>
vip_state_t<CONFIG_T> unpack_vip_state(const typename CONFIG_T::vip_state_word_t &word) {
    #pragma HLS INLINE
    vip_state_t<CONFIG_T> s;
    s.phase = field<CONFIG_T::vip_state_phase_lsb, CONFIG_T::vip_state_phase_bits>(word);
    s.old_version =
        field<CONFIG_T::vip_state_old_version_lsb, CONFIG_T::vip_state_old_version_bits>(word);
    s.cur_version =
        field<CONFIG_T::vip_state_cur_version_lsb, CONFIG_T::vip_state_cur_version_bits>(word);
    return s;
}

// ---- model.hashing -----------------------------------------------------------------

// model.hashing.hash_bytes: the salt, then the five key fields in the role's order,
// each big-endian; the first byte hashed is the most significant byte of the result.
inline ap_uint<MSG_BITS> hash_message(const hash_role_t &role, const key_t &key) {
    #pragma HLS INLINE
    ap_uint<MSG_BITS> msg = role.salt;
HASH_FIELDS:
    for (unsigned f = 0; f < N_KEY_FIELDS; f++) {
        #pragma HLS UNROLL
        switch (role.fields[f]) {
        case SRC_IP:
            msg = (msg << 32) | key.src_ip;
            break;
        case DST_IP:
            msg = (msg << 32) | key.dst_ip;
            break;
        case SRC_PORT:
            msg = (msg << 16) | key.src_port;
            break;
        case DST_PORT:
            msg = (msg << 16) | key.dst_port;
            break;
        case PROTO:
            msg = (msg << 8) | key.proto;
            break;
        }
    }
    return msg;
}

// model.hashing.crc32_tuple: zlib's CRC-32 (reflected, polynomial 0x04C11DB7, init and
// final xor 0xFFFFFFFF) of the message bytes, first byte first. Bit-serial form; fully
// unrolled it is an XOR network of constant depth (the role's salt folds away).
template <unsigned BITS> ap_uint<32> crc32_bits(const ap_uint<BITS> &msg) {
    #pragma HLS INLINE
    ap_uint<32> crc = CRC32_INIT;
CRC_BYTES:
    for (unsigned b = 0; b < BITS / 8; b++) {
        #pragma HLS UNROLL
        const ap_uint<32> byte = msg.range(BITS - 1 - 8 * b, BITS - 8 - 8 * b);
        crc ^= byte; // into the low 8 bits (reflected CRC)
    CRC_BITS:
        for (unsigned k = 0; k < 8; k++) {
            #pragma HLS UNROLL
            const bool lsb = crc[0];
            crc >>= 1;
            if (lsb) {
                crc ^= CRC32_POLY_REFLECTED;
            }
        }
    }
    return crc ^ CRC32_XOROUT;
}

inline ap_uint<32> crc32(const ap_uint<MSG_BITS> &msg) {
    #pragma HLS INLINE
    return crc32_bits<MSG_BITS>(msg);
}

// model.hashing.crc32_tuple(salt, key, FIELD_ORDERS[role])
inline ap_uint<32> role_hash(const hash_role_t &role, const key_t &key) {
    #pragma HLS INLINE
    return crc32(hash_message(role, key));
}

// model.hashing.pack_key: the 104-bit key, src_ip most significant
inline ap_uint<KEY_BITS> pack_key(const key_t &key) {
    #pragma HLS INLINE
    return (key.src_ip, key.dst_ip, key.src_port, key.dst_port, key.proto);
}

// model.hashing.Hasher.stage_indices: h_stage_i & (2**log2_slots - 1)
template <class CONFIG_T>
void stage_indices(const hash_role_t roles[CONFIG_T::n_stages], const key_t &key,
                   typename CONFIG_T::slot_index_t idx[CONFIG_T::n_stages]) {
    #pragma HLS INLINE
STAGE_HASHES:
    for (unsigned i = 0; i < CONFIG_T::n_stages; i++) {
        #pragma HLS UNROLL
        idx[i] = field<0, CONFIG_T::log2_slots>(role_hash(roles[i], key));
    }
}

// model.hashing.Hasher.digest: h_digest & (2**digest_bits - 1)
template <class CONFIG_T>
typename CONFIG_T::digest_t hash_digest(const hash_role_t &role, const key_t &key) {
    #pragma HLS INLINE
    return field<0, CONFIG_T::digest_bits>(role_hash(role, key));
}

// model.hashing.Hasher.maglev_index: h_maglev % maglev_size
template <class CONFIG_T>
typename CONFIG_T::maglev_index_t maglev_index(const hash_role_t &role, const key_t &key) {
    #pragma HLS INLINE
    const ap_uint<32> h = role_hash(role, key);
    if (CONFIG_T::maglev_pow2) {
        // a power-of-two size: the modulo is the low maglev_index_bits bits
        return field<0, CONFIG_T::maglev_index_bits>(h);
    }
    return h % ap_uint<32>(CONFIG_T::maglev_size);
}

// model.hashing.Hasher.transit_indices: h_transit_j & (2**transit_log2_bits - 1)
template <class CONFIG_T>
void transit_indices(const hash_role_t roles[CONFIG_T::transit_hashes], const key_t &key,
                     typename CONFIG_T::transit_index_t idx[CONFIG_T::transit_hashes]) {
    #pragma HLS INLINE
TRANSIT_HASHES:
    for (unsigned j = 0; j < CONFIG_T::transit_hashes; j++) {
        #pragma HLS UNROLL
        idx[j] = field<0, CONFIG_T::transit_log2_bits>(role_hash(roles[j], key));
    }
}

// ---- model.pipeline / model.conntable ----------------------------------------------

// model.pipeline.DataPlane.vip_match: the lowest-indexed valid entry equal to
// (dst ip, dst port, proto). The table is a register CAM: all entries compare at once.
template <class CONFIG_T>
bool vip_match(const typename CONFIG_T::vip_word_t vip[CONFIG_T::vip_depth], const key_t &key,
               typename CONFIG_T::vip_id_t &vip_id) {
    #pragma HLS INLINE
    bool found = false;
    vip_id = 0;
VIP_ENTRIES:
    for (unsigned v = 0; v < CONFIG_T::vip_depth; v++) {
        #pragma HLS UNROLL
        const typename CONFIG_T::vip_word_t w = vip[v];
        const bool match =
            field<CONFIG_T::vip_valid_lsb, CONFIG_T::vip_valid_bits>(w) == 1 &&
            field<CONFIG_T::vip_ip_lsb, CONFIG_T::vip_ip_bits>(w) == key.dst_ip &&
            field<CONFIG_T::vip_port_lsb, CONFIG_T::vip_port_bits>(w) == key.dst_port &&
            field<CONFIG_T::vip_proto_lsb, CONFIG_T::vip_proto_bits>(w) == key.proto;
        if (match && !found) {
            found = true;
            vip_id = v;
        }
    }
    return found;
}

// model.conntable.lookup_words: all stages are read in parallel; the first stage whose
// word is valid with the key's digest wins. A miss gives (false, 0, 0).
template <class CONFIG_T>
void conn_lookup(typename CONFIG_T::conn_word_t conn[CONFIG_T::n_stages][CONFIG_T::conn_depth],
                 const typename CONFIG_T::slot_index_t idx[CONFIG_T::n_stages],
                 const typename CONFIG_T::digest_t &digest, bool &hit,
                 typename CONFIG_T::stage_t &stage, typename CONFIG_T::version_t &version) {
    #pragma HLS INLINE
    hit = false;
    stage = 0;
    version = 0;
CONN_STAGES:
    for (unsigned i = 0; i < CONFIG_T::n_stages; i++) {
        #pragma HLS UNROLL
        const typename CONFIG_T::conn_word_t w = conn[i][idx[i]];
        const bool match =
            field<CONFIG_T::conn_valid_lsb, CONFIG_T::conn_valid_bits>(w) == 1 &&
            field<CONFIG_T::conn_digest_lsb, CONFIG_T::conn_digest_bits>(w) == digest;
        if (match && !hit) {
            hit = true;
            stage = i;
            version = field<CONFIG_T::conn_version_lsb, CONFIG_T::conn_version_bits>(w);
        }
    }
}

// model.pipeline.DataPlane.process, FLIP phase: transit_hit = every TransitTable bit of
// the key is set
template <class CONFIG_T>
bool transit_test(
    typename CONFIG_T::transit_word_t transit[CONFIG_T::transit_hashes][CONFIG_T::transit_depth],
    const typename CONFIG_T::transit_index_t idx[CONFIG_T::transit_hashes]) {
    #pragma HLS INLINE
    bool all_set = true;
TRANSIT_TEST:
    for (unsigned j = 0; j < CONFIG_T::transit_hashes; j++) {
        #pragma HLS UNROLL
        if (transit[j][idx[j]] == 0) {
            all_set = false;
        }
    }
    return all_set;
}

// model.pipeline.DataPlane.process, RECORD phase: set every TransitTable bit of the key
template <class CONFIG_T>
void transit_record(
    typename CONFIG_T::transit_word_t transit[CONFIG_T::transit_hashes][CONFIG_T::transit_depth],
    const typename CONFIG_T::transit_index_t idx[CONFIG_T::transit_hashes]) {
    #pragma HLS INLINE
TRANSIT_RECORD:
    for (unsigned j = 0; j < CONFIG_T::transit_hashes; j++) {
        #pragma HLS UNROLL
        transit[j][idx[j]] = 1;
    }
}

// model.pipeline.DataPlane._finish (and Decision() for a packet that is not for a VIP):
// slot_map[vip_id << V | version] -> Maglev table slot; maglev[slot * M + index] -> DIP
// index; dip[index] -> (ip, port). An invalid slot drops the packet and learns nothing.
template <class CONFIG_T>
decision_t<CONFIG_T>
finish(const typename CONFIG_T::slot_map_word_t slot_map[CONFIG_T::slot_map_depth],
       const typename CONFIG_T::maglev_word_t maglev[CONFIG_T::maglev_depth],
       const typename CONFIG_T::dip_word_t dip[CONFIG_T::dip_depth], const packet_t &pkt,
       bool is_vip, const typename CONFIG_T::vip_id_t &vip_id, bool hit,
       const typename CONFIG_T::stage_t &stage, const typename CONFIG_T::version_t &version,
       bool transit_hit, const typename CONFIG_T::maglev_index_t &mag_idx) {
    #pragma HLS INLINE
    const typename CONFIG_T::slot_map_addr_t slot_addr = (vip_id, version); // vip_id << V | version
    const typename CONFIG_T::slot_map_word_t slot_word = slot_map[slot_addr];
    const bool slot_valid =
        field<CONFIG_T::slot_map_valid_lsb, CONFIG_T::slot_map_valid_bits>(slot_word) == 1;
    const bool lb = is_vip && slot_valid;

    typename CONFIG_T::slot_t slot = 0;
    typename CONFIG_T::dip_index_t dip_index = 0;
    typename CONFIG_T::dip_word_t dip_word = 0;
    if (lb) {
        slot = field<CONFIG_T::slot_map_slot_lsb, CONFIG_T::slot_map_slot_bits>(slot_word);
        const typename CONFIG_T::maglev_addr_t mag_addr =
            slot * CONFIG_T::maglev_size + mag_idx;
        dip_index = field<CONFIG_T::maglev_dip_index_lsb, CONFIG_T::maglev_dip_index_bits>(
            maglev[mag_addr]);
        dip_word = dip[dip_index];
    }

    decision_t<CONFIG_T> d;
    d.action = !is_vip ? FORWARD : lb ? LB : DROP;
    d.vip_id = is_vip ? vip_id : typename CONFIG_T::vip_id_t(0);
    d.hit = is_vip && hit;
    d.stage = is_vip ? stage : typename CONFIG_T::stage_t(0);
    d.version = is_vip ? version : typename CONFIG_T::version_t(0);
    d.transit_hit = is_vip && transit_hit;
    d.slot = slot;
    d.dip = dip_index;
    d.dip_ip = field<CONFIG_T::dip_ip_lsb, CONFIG_T::dip_ip_bits>(dip_word);
    d.dip_port = field<CONFIG_T::dip_port_lsb, CONFIG_T::dip_port_bits>(dip_word);
    d.learn = lb && !hit;
    d.close = lb && hit && pkt.key.proto == PROTO_TCP &&
              (pkt.tcp_flags & (TCP_FIN | TCP_RST)) != 0;
    d.cookie = 0;
    return d;
}

// model.pipeline.Decision.out_dst: the emitted header, destination rewritten (DNAT)
// when the packet is load-balanced
// when the packet is load-balanced; for CHALLENGE the header of the reply
// (model.frame.challenge_frame): addresses and ports swapped, SYN|ACK, seq 0, ack cookie
template <class CONFIG_T> packet_t dnat(const packet_t &pkt, const decision_t<CONFIG_T> &d) {
    #pragma HLS INLINE
    packet_t out = pkt;
    if (d.action == LB) {
        out.key.dst_ip = d.dip_ip;
        out.key.dst_port = d.dip_port;
    }
    if (d.action == CHALLENGE) {
        out.key.src_ip = pkt.key.dst_ip;
        out.key.dst_ip = pkt.key.src_ip;
        out.key.src_port = pkt.key.dst_port;
        out.key.dst_port = pkt.key.src_port;
        out.tcp_flags = TCP_SYN | TCP_ACK;
        out.seq = 0;
        out.ack = d.cookie;
    }
    return out;
}

// model.controlplane.ControlPlane.observe: what the control plane needs of a decision
template <class CONFIG_T>
learn_t<CONFIG_T> learn_event(const key_t &key, const decision_t<CONFIG_T> &d) {
    #pragma HLS INLINE
    learn_t<CONFIG_T> ev;
    ev.key = key;
    ev.vip_id = d.vip_id;
    ev.version = d.version;
    ev.learn = d.learn;
    ev.close = d.close;
    return ev;
}

// model.layout.Memories.write: one control-plane write. Each memory has this single
// write port; only the TransitTable is also written by the data plane (RECORD phase).
template <class CONFIG_T>
void table_write(const command_t<CONFIG_T> &cmd,
                 typename CONFIG_T::conn_word_t conn[CONFIG_T::n_stages][CONFIG_T::conn_depth],
                 typename CONFIG_T::vip_word_t vip[CONFIG_T::vip_depth],
                 typename CONFIG_T::vip_state_word_t vip_state[CONFIG_T::vip_state_depth],
                 typename CONFIG_T::slot_map_word_t slot_map[CONFIG_T::slot_map_depth],
                 typename CONFIG_T::maglev_word_t maglev[CONFIG_T::maglev_depth],
                 typename CONFIG_T::dip_word_t dip[CONFIG_T::dip_depth],
                 typename CONFIG_T::transit_word_t
                     transit[CONFIG_T::transit_hashes][CONFIG_T::transit_depth]) {
    #pragma HLS INLINE
WRITE_CONN:
    for (unsigned i = 0; i < CONFIG_T::n_stages; i++) {
        #pragma HLS UNROLL
        if (cmd.mem == CONFIG_T::mem_conn0 + i) {
            conn[i][cmd.addr] = cmd.data;
        }
    }
    if (cmd.mem == CONFIG_T::mem_vip) {
        vip[cmd.addr] = cmd.data;
    }
    if (cmd.mem == CONFIG_T::mem_vip_state) {
        vip_state[cmd.addr] = cmd.data;
    }
    if (cmd.mem == CONFIG_T::mem_slot_map) {
        slot_map[cmd.addr] = cmd.data;
    }
    if (cmd.mem == CONFIG_T::mem_maglev) {
        maglev[cmd.addr] = cmd.data;
    }
    if (cmd.mem == CONFIG_T::mem_dip) {
        dip[cmd.addr] = cmd.data;
    }
WRITE_TRANSIT:
    for (unsigned j = 0; j < CONFIG_T::transit_hashes; j++) {
        #pragma HLS UNROLL
        if (cmd.mem == CONFIG_T::mem_transit0 + j) {
            transit[j][cmd.addr] = cmd.data;
        }
    }
}

// ---- the connection lifecycle (docs/lifecycle.md; lifecycle configs only) ----------

// model.cookie.COOKIE_FLIP
static const unsigned COOKIE_FLIP = 0x80000000u;

inline ap_uint<32> rotl32(const ap_uint<32> &x, unsigned b) {
    #pragma HLS INLINE
    return (x << b) | (x >> (32 - b));
}

// model.cookie._sipround
inline void sipround(ap_uint<32> &v0, ap_uint<32> &v1, ap_uint<32> &v2, ap_uint<32> &v3) {
    #pragma HLS INLINE
    v0 += v1;
    v1 = rotl32(v1, 5) ^ v0;
    v0 = rotl32(v0, 16);
    v2 += v3;
    v3 = rotl32(v3, 8) ^ v2;
    v0 += v3;
    v3 = rotl32(v3, 7) ^ v0;
    v2 += v1;
    v1 = rotl32(v1, 13) ^ v2;
    v2 = rotl32(v2, 16);
}

// model.cookie.halfsiphash24_words of a 12-byte message (three little-endian words)
inline ap_uint<32> halfsiphash24(const ap_uint<64> &key, const ap_uint<32> &m0,
                                 const ap_uint<32> &m1, const ap_uint<32> &m2) {
    #pragma HLS INLINE
    ap_uint<32> v0 = key.range(31, 0);
    ap_uint<32> v1 = key.range(63, 32);
    ap_uint<32> v2 = v0 ^ ap_uint<32>(0x6c796765u);
    ap_uint<32> v3 = v1 ^ ap_uint<32>(0x74656462u);
    const ap_uint<32> words[4] = {m0, m1, m2, ap_uint<32>(12u << 24)};
SIP_WORDS:
    for (unsigned w = 0; w < 4; w++) {
        #pragma HLS UNROLL
        v3 ^= words[w];
        sipround(v0, v1, v2, v3);
        sipround(v0, v1, v2, v3);
        v0 ^= words[w];
    }
    v2 ^= 0xff;
SIP_FINAL:
    for (unsigned r = 0; r < 4; r++) {
        #pragma HLS UNROLL
        sipround(v0, v1, v2, v3);
    }
    return v1 ^ v3;
}

// model.cookie.cookie: the hash with bit 0 replaced by the key's epoch parity
inline ap_uint<32> cookie(const ap_uint<64> &key, const ap_uint<1> &parity, const key_t &k) {
    #pragma HLS INLINE
    ap_uint<32> h = halfsiphash24(key, k.src_ip, k.dst_ip, (k.src_port, k.dst_port));
    h[0] = parity;
    return h;
}

// model.hashing.Hasher.auth_slots: zlib.crc32(salt || src_ip)
inline ap_uint<32> source_hash(unsigned salt, const ap_uint<32> &src_ip) {
    #pragma HLS INLINE
    return crc32_bits<64>((ap_uint<32>(salt), src_ip));
}

// model.pipeline.DataPlane.authenticate, for a TCP miss of an auth VIP: false when the
// source is verified (the miss goes on); else true with the CHALLENGE / VERIFY /
// UNVERIFIED decision in d. Writes the verified-source word a VERIFY or a verified
// SYN leaves.
template <class CONFIG_T>
bool authenticate(typename CONFIG_T::auth_word_t auth[2][CONFIG_T::auth_depth],
                  const typename CONFIG_T::auth_key_word_t auth_key[2],
                  const ap_uint<1> &epoch, const packet_t &pkt,
                  const typename CONFIG_T::vip_id_t &vip_id, decision_t<CONFIG_T> &d) {
    #pragma HLS INLINE
    const typename CONFIG_T::auth_index_t i0 =
        source_hash(CONFIG_T::auth_salt0, pkt.key.src_ip).range(CONFIG_T::auth_log2_sources - 1, 0);
    const typename CONFIG_T::auth_index_t i1 =
        source_hash(CONFIG_T::auth_salt1, pkt.key.src_ip).range(CONFIG_T::auth_log2_sources - 1, 0);
    const ap_uint<CONFIG_T::auth_tag_bits> tag =
        source_hash(CONFIG_T::auth_tag_salt, pkt.key.src_ip).range(CONFIG_T::auth_tag_bits - 1, 0);
    const typename CONFIG_T::auth_word_t w0 = auth[0][i0];
    const typename CONFIG_T::auth_word_t w1 = auth[1][i1];
    const bool valid0 = field<CONFIG_T::auth_valid_lsb, CONFIG_T::auth_valid_bits>(w0) == 1;
    const bool valid1 = field<CONFIG_T::auth_valid_lsb, CONFIG_T::auth_valid_bits>(w1) == 1;
    const bool match0 = valid0 && field<CONFIG_T::auth_tag_lsb, CONFIG_T::auth_tag_bits>(w0) == tag;
    const bool match1 = valid1 && field<CONFIG_T::auth_tag_lsb, CONFIG_T::auth_tag_bits>(w1) == tag;
    const bool syn = (pkt.tcp_flags & TCP_SYN) != 0 && (pkt.tcp_flags & TCP_ACK) == 0;
    typename CONFIG_T::auth_word_t fresh = 0;
    fresh.range(CONFIG_T::auth_tag_lsb + CONFIG_T::auth_tag_bits - 1, CONFIG_T::auth_tag_lsb) = tag;
    fresh[CONFIG_T::auth_stamp_lsb] = epoch;
    fresh[CONFIG_T::auth_valid_lsb] = 1;
    if (match0 || match1) {
        if (syn) {
            if (match0) {
                auth[0][i0] = fresh;
            } else {
                auth[1][i1] = fresh;
            }
        }
        return false;
    }
    d.action = UNVERIFIED;
    d.vip_id = vip_id;
    d.hit = 0;
    d.stage = 0;
    d.version = 0;
    d.transit_hit = 0;
    d.slot = 0;
    d.dip = 0;
    d.dip_ip = 0;
    d.dip_port = 0;
    d.learn = 0;
    d.close = 0;
    d.cookie = 0;
    const bool rst = (pkt.tcp_flags & TCP_RST) != 0 && (pkt.tcp_flags & TCP_SYN) == 0;
    if (syn && (pkt.tcp_flags & (TCP_RST | TCP_FIN)) == 0) {
        const ap_uint<32> c = cookie(auth_key[epoch], epoch, pkt.key);
        d.action = CHALLENGE;
        d.cookie = c == ap_uint<32>(pkt.seq + 1) ? ap_uint<32>(c ^ COOKIE_FLIP) : c;
        return true;
    }
    if (rst) {
        const ap_uint<1> parity = pkt.seq[0];
        const ap_uint<32> c = cookie(auth_key[parity], parity, pkt.key);
        if (pkt.seq == c || pkt.seq == ap_uint<32>(c ^ COOKIE_FLIP)) {
            const bool cur0 =
                valid0 && field<CONFIG_T::auth_stamp_lsb, CONFIG_T::auth_stamp_bits>(w0) == epoch;
            const bool cur1 =
                valid1 && field<CONFIG_T::auth_stamp_lsb, CONFIG_T::auth_stamp_bits>(w1) == epoch;
            if (cur0 && !cur1) {
                auth[1][i1] = fresh;
            } else {
                auth[0][i0] = fresh;
            }
            d.action = VERIFY;
            return true;
        }
    }
    d.action = UNVERIFIED;
    return true;
}

} // namespace l4lb

#endif // L4LB_CORE_H_
