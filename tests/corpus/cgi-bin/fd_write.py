#!/usr/bin/env python3
# Writes to fd 1 by number, around Python's own (buffered) output.
import os
os.write(1, b"Content-Type: text/plain\r\n\r\n")
print("printed, buffered until exit")
os.write(1, b"written to fd 1\n")
