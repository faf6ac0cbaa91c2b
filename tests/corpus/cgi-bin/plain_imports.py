#!/usr/bin/env python3
"""Imports as any script does, and says whether what it got is a plain, loaded module."""
import types

import xml.etree.ElementTree as ET
import email.mime.text
import site_state

print("Content-Type: text/plain")
print()
for module in (types, ET, email.mime.text, site_state):
    print(type(module).__name__, module.__name__)
print(ET.fromstring("<a><b/></a>")[0].tag)
