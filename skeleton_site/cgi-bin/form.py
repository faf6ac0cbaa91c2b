#!/usr/bin/env python3
"""Read a form sent with GET (the query string) or POST (the request body)."""

import html
import os
import warnings

with warnings.catch_warnings():
    # Deprecated since Python 3.11 (the legacy-cgi package provides it from 3.13 on);
    # without this, every request would write the warning to logs/error.log.
    warnings.simplefilter("ignore", DeprecationWarning)
    import cgi


def esc(text):
    """HTML-escape, and write non-ASCII as character references so any output encoding works."""
    return html.escape(text).encode("ascii", "xmlcharrefreplace").decode("ascii")


form = cgi.FieldStorage()
method = os.environ.get("REQUEST_METHOD", "GET")
fields = []
for key in sorted(form.keys()) if form.list is not None else []:
    for value in form.getlist(key):
        fields.append((key, value))

print("Content-Type: text/html; charset=utf-8")
print()
print("<!DOCTYPE html>")
print("<html><head><meta charset='utf-8'><title>Form</title></head><body>")
print(f"<h1>Form received by {esc(method)}</h1>")
name = form.getfirst("name", "") if form.list is not None else ""
if name:
    print(f"<p>Hello, <strong>{esc(name)}</strong>!</p>")
if fields:
    print("<table border='1'><tr><th>Field</th><th>Value</th></tr>")
    for key, value in fields:
        print(f"<tr><td>{esc(key)}</td><td>{esc(value)}</td></tr>")
    print("</table>")
else:
    print("<p>No fields were sent.</p>")
print("<p><a href='/'>Back</a></p>")
print("</body></html>")
