#!/usr/bin/env python3
"""Changes every piece of process state a CGI script can reach, as careless scripts do."""
import atexit
import os
import signal
import sys

import cgi

os.environ["LEAKED_VAR"] = "from leaky"
os.putenv("LEAKED_PUTENV", "from leaky")
os.chdir("/")
sys.argv.append("leaked-arg")
sys.path.insert(0, "/leaked/path")
cgi.maxlen = 50
sys.stderr = sys.stdout
signal.signal(signal.SIGUSR1, lambda s, f: None)
os.umask(0o000)
atexit.register(lambda: print("atexit ran"))
GLOBAL_FROM_LEAKY = 1
print("Content-Type: text/plain")
print()
print("leaky", os.environ.get("QUERY_STRING"))
