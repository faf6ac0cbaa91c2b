#!/usr/bin/env python3
hog = []
while True:
    hog.append(bytearray(16 * 1024 * 1024))
