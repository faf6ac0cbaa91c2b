#!/usr/bin/env python3
# The whole response, headers included, comes from a shell child.
import os
os.system("printf 'Content-Type: text/plain\\r\\nX-From: the shell\\r\\n\\r\\nbody from the shell\\n'")
