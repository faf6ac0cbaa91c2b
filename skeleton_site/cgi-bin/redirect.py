#!/usr/bin/env python3
"""Send the browser to another page with a Location header.

The explicit Status line makes every server answer the same 302: without it, Apache treats
a Location that starts with "/" as an internal redirect and never tells the browser.
"""

import warnings

with warnings.catch_warnings():
    # Deprecated since Python 3.11 (the legacy-cgi package provides it from 3.13 on);
    # without this, every request would write the warning to logs/error.log.
    warnings.simplefilter("ignore", DeprecationWarning)
    import cgi

form = cgi.FieldStorage()
target = form.getfirst("to", "/") if form.list is not None else "/"
# Only paths on this site: an open redirect would let others lend their links our name.
if not target.startswith("/") or target.startswith("//") or "\\" in target:
    target = "/"
target = "".join(c for c in target if c >= " " and c != "\x7f")

print("Status: 302 Found")
print(f"Location: {target}")
print("Content-Type: text/plain; charset=utf-8")
print()
print(f"Redirecting to {target}")
