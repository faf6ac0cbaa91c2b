#!/usr/bin/env python3
# A child reads the whole request body from the stdin it inherits, before any header is
# sent (nginx stops sending a body once the response has begun).
import hashlib
import subprocess
body = subprocess.run(["cat"], stdout=subprocess.PIPE, check=True).stdout
print("Content-Type: text/plain")
print()
print("cat read", len(body), "bytes, sha256", hashlib.sha256(body).hexdigest())
