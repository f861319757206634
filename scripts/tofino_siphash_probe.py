#!/usr/bin/env python3
"""How many Tofino MAU stages does the SYN-authentication cookie take? (docs/lifecycle.md)

    python scripts/tofino_siphash_probe.py [--rounds 12] [--target tofino|tofino2]

Writes a minimal TNA program whose ingress computes model.cookie's HalfSipHash-2-4 over
the three message words of a TCP SYN (src ip, dst ip, ports) with the 64-bit key from a
table, exactly the operations of model.cookie._sipround (add, rotate, xor on four
32-bit words; a rotation is a funnel shift), compiles it with bf-p4c and prints the
stages the compiler needed -- or the assembler's "supports up to N stages, using M".
``--rounds`` compiles only the first SipRounds (12 is the whole function: 4 message
blocks x 2 + 4 finalization rounds), so the per-round cost can be read off. Each round
is four dependent steps (add / funnel-shift rotate, then xor), each step one MAU stage.
Measured with bf-p4c 9.13.4 on 2026-11-30 (docs/lifecycle.md, "TNA"): 1, 2, 3, 4
rounds take 7, 11, 16, 20 stages on Tofino 1 and on Tofino 2 (3 and 4 do not fit
Tofino 1's 12); the whole function (57 steps) stops earlier, at PHV allocation.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from codegen.p4_tna_auth import render_step, sipround_steps  # noqa: E402
from l4lb.tofino import unavailable  # noqa: E402

HEAD = """#include <core.p4>
#if __TARGET_TOFINO__ == 2
#include <t2na.p4>
#else
#include <tna.p4>
#endif

header ethernet_h { bit<48> dst; bit<48> src; bit<16> ether_type; }
header ipv4_h {
    bit<4> version; bit<4> ihl; bit<8> diffserv; bit<16> total_len; bit<16> ident;
    bit<3> flags; bit<13> frag; bit<8> ttl; bit<8> protocol; bit<16> csum;
    bit<32> src; bit<32> dst;
}
header tcp_h {
    bit<16> sport; bit<16> dport; bit<32> seq; bit<32> ack; bit<4> off; bit<4> res;
    bit<8> flags; bit<16> window; bit<16> csum; bit<16> urg;
}
struct headers_t { ethernet_h eth; ipv4_h ipv4; tcp_h tcp; }
struct meta_t { bit<32> v0; bit<32> v1; bit<32> v2; bit<32> v3; bit<32> sip_t1; bit<32> sip_t3;
                bit<32> m0; bit<32> m1; bit<32> m2; bit<32> m3; }

parser IgParser(packet_in pkt, out headers_t hdr, out meta_t md,
                out ingress_intrinsic_metadata_t ig_intr_md) {
    state start {
        pkt.extract(ig_intr_md);
        pkt.advance(PORT_METADATA_SIZE);
        pkt.extract(hdr.eth);
        pkt.extract(hdr.ipv4);
        pkt.extract(hdr.tcp);
        transition accept;
    }
}

control Ig(inout headers_t hdr, inout meta_t md,
           in ingress_intrinsic_metadata_t ig_intr_md,
           in ingress_intrinsic_metadata_from_parser_t ig_prsr_md,
           inout ingress_intrinsic_metadata_for_deparser_t ig_dprsr_md,
           inout ingress_intrinsic_metadata_for_tm_t ig_tm_md) {
    // the initial state (model.cookie.halfsiphash24_words): k0, k1, k0 ^ 0x6c796765,
    // k1 ^ 0x74656462, all four given by the control plane with the key
    action set_key(bit<32> v0, bit<32> v1, bit<32> v2, bit<32> v3) {
        md.v0 = v0;
        md.v1 = v1;
        md.v2 = v2;
        md.v3 = v3;
    }
    table auth_key { key = { hdr.tcp.seq[0:0] : exact; } actions = { set_key; } size = 2; }
    apply {
        ig_tm_md.ucast_egress_port = ig_intr_md.ingress_port;
        auth_key.apply();
"""

TAIL = """        hdr.tcp.ack = md.v1 ^ md.v3;
    }
}

control IgDeparser(packet_out pkt, inout headers_t hdr, in meta_t md,
                   in ingress_intrinsic_metadata_for_deparser_t ig_dprsr_md) {
    apply { pkt.emit(hdr); }
}

struct eg_headers_t { }
struct eg_meta_t { }

parser EgParser(packet_in pkt, out eg_headers_t hdr, out eg_meta_t md,
                out egress_intrinsic_metadata_t eg_intr_md) {
    state start { pkt.extract(eg_intr_md); transition accept; }
}

control Eg(inout eg_headers_t hdr, inout eg_meta_t md,
           in egress_intrinsic_metadata_t eg_intr_md,
           in egress_intrinsic_metadata_from_parser_t eg_prsr_md,
           inout egress_intrinsic_metadata_for_deparser_t eg_dprsr_md,
           inout egress_intrinsic_metadata_for_output_port_t eg_oport_md) {
    apply { }
}

control EgDeparser(packet_out pkt, inout eg_headers_t hdr, in eg_meta_t md,
                   in egress_intrinsic_metadata_for_deparser_t eg_dprsr_md) {
    apply { }
}

Pipeline(IgParser(), Ig(), IgDeparser(), EgParser(), Eg(), EgDeparser()) pipe;
Switch(pipe) main;
"""


#: model.cookie._sipround as four steps of independent single operations (a Tofino
#: action writes each field once, from at most two sources): the step boundaries are
#: the data dependencies, so each step needs its own MAU stage. The same steps as the
#: TNA program's cookie passes (codegen.p4_tna_auth.sipround_steps), in metadata.
SIPROUND_STEPS = tuple(tuple(render_step(step, "md", "md")) for step in sipround_steps())


def steps(rounds: int) -> list[tuple[str, ...]]:
    """The cookie's steps: the message words into metadata, then message blocks
    m0..m2 and the length block (v3 ^= m, two SipRounds, v0 ^= m), then v2 ^= 0xff and
    four SipRounds -- cut after ``rounds``."""
    blocks = ["md.m0", "md.m1", "md.m2", "md.m3"]
    out: list[tuple[str, ...]] = [("md.m0 = hdr.ipv4.src;", "md.m1 = hdr.ipv4.dst;",
                                   "md.m2 = hdr.tcp.sport ++ hdr.tcp.dport;",
                                   "md.m3 = 0x0c000000;")]  # the length block: 12 << 24
    done = 0
    for k, m in enumerate(blocks):
        if done >= rounds:
            break
        out.append((f"md.v3 = md.v3 ^ {m};",))
        for _ in range(2):
            if done < rounds:
                out += SIPROUND_STEPS
                done += 1
        out.append((f"md.v0 = md.v0 ^ {m};",) + (("md.v2 = md.v2 ^ 0xff;",)
                                                 if k == len(blocks) - 1 else ()))
    while done < rounds:
        out += SIPROUND_STEPS
        done += 1
    return out


def program(rounds: int) -> str:
    """The probe: one action per step, applied in order."""
    acts = "".join(f"    action step{i}() {{ {' '.join(st)} }}\n"
                   for i, st in enumerate(steps(rounds)))
    calls = "".join(f"        step{i}();\n" for i in range(len(steps(rounds))))
    return HEAD.replace("    apply {\n", acts + "    apply {\n") + calls + TAIL


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--target", choices=["tofino", "tofino2"], default="tofino")
    a = ap.parse_args()
    why = unavailable()
    if why:
        print(f"tofino_siphash_probe: {why}", file=sys.stderr)
        return 2
    import subprocess

    work = Path(tempfile.mkdtemp(prefix="l4lb-siphash-"))
    src = work / "siphash.p4"
    src.write_text(program(a.rounds))
    arch = "t2na" if a.target == "tofino2" else "tna"
    r = subprocess.run(["bf-p4c", "--target", a.target, "--arch", arch, "-g", "-o",
                        str(work / "out"), str(src)], capture_output=True, text=True)
    log = r.stdout + r.stderr
    m = re.search(r"supports up to (\d+) stages, using (\d+)", log)
    summary = work / "out" / "pipe" / "logs" / "table_summary.log"
    used = None
    if summary.exists():
        s = re.search(r"Number of stages in table allocation: (\d+)", summary.read_text())
        used = int(s[1]) if s else None
    if m:
        print(f"{a.rounds} SipRounds on {a.target}: does not fit -- {m[0]} (bf-p4c)")
    elif r.returncode == 0:
        print(f"{a.rounds} SipRounds on {a.target}: compiled, {used} MAU stages (bf-p4c)")
    else:
        print(f"{a.rounds} SipRounds on {a.target}: bf-p4c failed:\n{log[-2000:]}")
        return 1
    print(f"(program and logs: {work})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
