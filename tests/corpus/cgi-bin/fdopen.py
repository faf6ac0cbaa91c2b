#!/usr/bin/env python3
# A binary file object on fd 1, and shutil.copyfileobj into it.
import os
import shutil
import sys
out = os.fdopen(1, "wb")
out.write(b"Content-Type: text/plain\r\n\r\n")
with open("data.txt", "rb") as f:
    shutil.copyfileobj(f, out)
out.flush()
sys.stdout.buffer.write(b"then sys.stdout.buffer\n")
