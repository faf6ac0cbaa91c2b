#!/usr/bin/env python3
import os
print("Content-Type: text/plain")
print()
print("deep", os.environ["SCRIPT_NAME"])
