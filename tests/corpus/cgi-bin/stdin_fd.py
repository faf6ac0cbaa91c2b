#!/usr/bin/env python3
# The request body read from fd 0 by number: exactly CONTENT_LENGTH bytes, then EOF.
import hashlib
import os
import stat
st = os.fstat(0)
chunks = []
while True:
    chunk = os.read(0, 4096)
    if not chunk:
        break
    chunks.append(chunk)
body = b"".join(chunks)
print("Content-Type: text/plain")
print()
print("fd 0 is a pipe:", stat.S_ISFIFO(st.st_mode))
print("read", len(body), "bytes, sha256", hashlib.sha256(body).hexdigest())
