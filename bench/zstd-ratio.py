#!/usr/bin/env python3
"""Would zstd make compressed event streams smaller than gzip? (issue 26: "zstd where offered,
if it measures better"). Compresses the load tool's price-tick frames (`--feed ticks`, the same
fields and spread of values) the way the server's shared compressor does: one compressor over
the feed, flushed after each frame so each event decodes as it arrives, reset every 64 frames.
deflate: zlib level 6, raw, a sync flush per frame and a full flush at each reset point (what
`server/src/feed/frame/gzip.rs` does); zstd: a frame per reset interval, a block flush per
event, at levels 1, 3 and 6. Prints plain bytes ÷ compressed bytes for each.
Needs the `zstandard` package (`pip install zstandard`); zlib is in the standard library.
Usage: python3 bench/zstd-ratio.py [FRAMES]   (default 640)
"""
import sys
import zlib

import zstandard

SYMBOLS = ["ACME", "GLOBX", "INITECH", "UMBRL", "STARK", "WAYNE", "HOOLI", "VANDL"]
RESET_EVERY = 64


def tick(i):
    """Frame `i` as the server sends the load tool's price tick `i` (bench/src/load.rs)."""
    h = (i * 0x9E3779B97F4A7C15 % (1 << 64)) >> 16
    data = (
        '{"t":%d,"n":%d,"symbol":"%s","price":%d.%02d,"change":-%d.%02d,"volume":%d,'
        '"bid":%d.%02d,"ask":%d.%02d,"exchange":"XNAS","currency":"USD"}'
        % (1795000000000000 + i * 100000, i, SYMBOLS[h % 8], 100 + h % 900, h % 100, h % 5,
           (h >> 8) % 100, 1000 + (h >> 12) % 90000, 100 + h % 900, (h >> 4) % 100,
           100 + h % 900, (h >> 6) % 100))
    fid = 1795000000000000 + i
    return ('id: %d\nevent: load\ndata: {"id":%d,"type":"load","data":%s,"time":%d}\n\n'
            % (fid, fid, data, 1795000000000 + i)).encode()


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 640
    frames = [tick(i) for i in range(n)]
    plain = sum(map(len, frames))
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = 0
    for i, frame in enumerate(frames):
        if i and i % RESET_EVERY == 0:
            out += len(deflate.flush(zlib.Z_FULL_FLUSH))
        out += len(deflate.compress(frame)) + len(deflate.flush(zlib.Z_SYNC_FLUSH))
    print(f"deflate level 6, sync flush per frame: {plain / out:.2f}x")
    for level in (1, 3, 6):
        cctx = zstandard.ZstdCompressor(level=level)
        out = 0
        for start in range(0, n, RESET_EVERY):
            z = cctx.compressobj()
            for frame in frames[start:start + RESET_EVERY]:
                out += len(z.compress(frame)) + len(z.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))
            out += len(z.flush())
        print(f"zstd level {level}, block flush per frame: {plain / out:.2f}x")


if __name__ == "__main__":
    main()
