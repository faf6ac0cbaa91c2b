#!/usr/bin/env python3
"""Leaves state in a library module, as mod_perl-style persistent code may."""
import string
string.cgirt_leftover = "from a persistent request"
print("Content-Type: text/plain")
print()
print("left something behind")
