#!/usr/bin/env python3
import struct
import sys
import zlib

def png(width, height):
    raw = b"".join(b"\0" + bytes(v for x in range(width) for v in (x * 16 % 256, y * 16 % 256, 200))
                   for y in range(height))
    def chunk(kind, data):
        return struct.pack("!I", len(data)) + kind + data + struct.pack("!I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack("!IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))

print("Content-Type: image/png")
print()
sys.stdout.flush()
sys.stdout.buffer.write(png(16, 16))
