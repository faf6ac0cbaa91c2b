#!/usr/bin/env python3
print("this is not a header")
print()
print("body")
