#!/usr/bin/env python3
import helper_outer
print("Content-Type: text/plain")
print()
print(helper_outer.describe())
