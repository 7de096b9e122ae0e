#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets: OUT/packet/* (a mode byte, then an Ethernet
frame), OUT/control/* (an access byte, then a control-socket request line) and OUT/config/*
(config texts: every shipped config and a few that use the whole
grammar). Usage: fuzz/seeds.py OUT"""
import pathlib
import struct
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
MAC = bytes.fromhex("020000000010020000000001")


def csum(b):
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def l4(proto, sport=40000, dport=80, payload=b"GET / HTTP/1.1\r\n\r\n"):
    if proto == 6:
        return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 65535, 0, 0) + payload
    if proto == 17:
        return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    if proto == 132:
        return struct.pack("!HHII", sport, dport, 0, 0) + payload
    if proto in (1, 58):
        return struct.pack("!BBHI", 8 if proto == 1 else 128, 0, 0, 1) + payload
    return payload


def ipv4(body, proto, src="198.18.100.1", dst="198.18.0.10", options=b"", frag=0, ident=0x1234):
    ihl = 5 + len(options) // 4
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(body), ident, frag, 64, proto, 0,
                    bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))))
    h += options
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + body


def v6addr(a):
    import ipaddress
    return ipaddress.IPv6Address(a).packed


def ipv6(body, first_nh, src="2001:db8:99::1", dst="2001:db8::10"):
    return struct.pack("!IHBB16s16s", 0x60000000, len(body), first_nh, 64, v6addr(src), v6addr(dst)) + body


def ext(nh, body=b"\x00" * 6):
    return bytes([nh, (len(body) + 2) // 8 - 1]) + body


def frag6(nh, offset, more, ident):
    return struct.pack("!BBHI", nh, 0, offset | more, ident)


def eth(payload, ethertype, tags=()):
    out = MAC
    for tpid in tags:
        out += struct.pack("!HH", tpid, 7)
    return out + struct.pack("!H", ethertype) + payload


def packets():
    seg = l4(6)
    yield 0, eth(ipv4(seg, 6), 0x0800)
    yield 2, eth(ipv4(l4(17, dport=53, payload=b"\x12\x34" + b"\x00" * 10), 17, dst="198.18.0.20"), 0x0800)
    yield 2, eth(ipv4(l4(1), 1), 0x0800)
    yield 2, eth(ipv4(l4(132), 132), 0x0800)
    yield 2, eth(ipv4(b"\x00" * 8, 47), 0x0800)
    yield 8, eth(ipv4(l4(6, 80, 40000), 6, src="198.18.0.10", dst="198.18.100.1"), 0x0800)
    yield 2, eth(ipv4(seg, 6), 0x0800, tags=(0x8100,))
    yield 2, eth(ipv4(seg, 6), 0x0800, tags=(0x88A8, 0x8100))
    yield 3, eth(ipv4(seg, 6, options=bytes([0x83, 7, 4, 198, 18, 0, 1, 0])), 0x0800)
    yield 3, eth(ipv4(seg, 6, options=bytes([0x44, 8, 5, 0, 0, 0, 0, 0])), 0x0800)
    yield 2, eth(ipv4(seg[:24], 6, frag=0x2000, ident=7), 0x0800)
    yield 2, eth(ipv4(seg[24:], 6, frag=3, ident=7), 0x0800)
    yield 2, eth(ipv4(seg[:8], 6, frag=0x2000, ident=8), 0x0800)
    yield 6, eth(ipv4(seg[:24], 6, frag=0x2000, ident=9), 0x0800)
    yield 2, eth(ipv6(seg, 6), 0x86DD)
    yield 2, eth(ipv6(l4(58), 58), 0x86DD)
    yield 2, eth(ipv6(ext(60) + ext(6) + seg, 0), 0x86DD)  # hop-by-hop, destination options
    yield 2, eth(ipv6(ext(6, bytes([4, 0, 0, 0, 0, 0])) + seg, 43), 0x86DD)  # segment routing
    yield 2, eth(ipv6(frag6(6, 0, 1, 77) + seg[:24], 44), 0x86DD)
    yield 2, eth(ipv6(frag6(6, 24, 0, 77) + seg[24:], 44), 0x86DD)
    yield 2, eth(ipv6(frag6(60, 0, 1, 78) + ext(6) + seg[:16], 44), 0x86DD)
    yield 2, eth(ipv6(frag6(44, 0, 0, 79) + frag6(6, 0, 0, 79) + seg, 44), 0x86DD)
    yield 0, eth(bytes.fromhex("0001080006040001020000000001c6126401000000000000c612000a"), 0x0806)
    yield 0, eth(b"\x11" * 46, 0x88CC)


def configs():
    for ini in sorted((ROOT / "conf").glob("*.ini")):
        yield ini.name, ini.read_bytes()
    yield "grammar.ini", b"""[appliance]
me = 198.18.0.10, [2001:db8::1]
assign = P
strict = off
fragments = track
ip_options = drop
non_ip = 0x0806, 0x88cc
[filterlist L]
filter = *+0:80-90:TCP on=outside
filter = [2001:db8::]/32=*::ICMPV6:128/0
filter = 198.18.0.0/15+me:53:UDP
filter = 0+*:1024-65535:SCTP on=inside
filter = *=0::ICMP:8
filter = *+0::47
[filteraction Allow]
action = permit
[policy P]
rule = L -> Allow
rule = L -> block
"""
    yield "empty.ini", b"[appliance]\nassign =\n"


def requests():
    """Control-socket requests: an access byte (1 full, 0 read-only), then one line."""
    lines = [
        b'{"cmd":"status"}', b'{"cmd":"stats"}', b'{"cmd":"stats","format":"text"}',
        b'{"cmd":"stats","format":"prometheus"}', b'{"cmd":"rules"}',
        b'{"cmd":"explain","packet":"tcp 198.18.100.1:40000 -> 198.18.0.10:80"}',
        b'{"cmd":"explain","packet":"tcp 198.18.100.1:1 -> 198.18.0.10:80 payload-hex c328e9ff"}',
        b'{"cmd":"explain","packet":"icmpv6 [2001:db8::1] -> [2001:db8::10] icmp 128/0 on outside"}',
        b'{"cmd":"reload"}', b'{"cmd":"assign","policy":"Admin"}', b'{"cmd":"unassign"}',
        b'{"cmd":"assign","policy":"Evil\\n[filterlist X]\\nfilter = *+*"}',
        b'{"cmd":"assign","policy":"Servers"}', b'{"cmd":"nope"}', b'[]', b'"x"', b'{"cmd":7}',
    ]
    for i, line in enumerate(lines):
        for access in (0, 1):
            yield f"seed-{i:02}-{access}", bytes([access]) + line


def main():
    out = pathlib.Path(sys.argv[1])
    for sub in ("packet", "config", "control"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for i, (mode, frame) in enumerate(packets()):
        (out / "packet" / f"seed-{i:02}").write_bytes(bytes([mode]) + frame)
    for name, text in configs():
        (out / "config" / name).write_bytes(text)
    for name, req in requests():
        (out / "control" / name).write_bytes(req)


if __name__ == "__main__":
    main()
