#!/usr/bin/env python3
def broken():
    return 1 / 0
broken()
