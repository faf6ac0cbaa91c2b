#!/usr/bin/env python3
"""Receive a file upload (multipart/form-data) and report its name, size and SHA-256."""

import hashlib
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


def digest(stream):
    """Size and SHA-256 of a file object, read in pieces: uploads may be large."""
    sha = hashlib.sha256()
    size = 0
    while True:
        piece = stream.read(64 * 1024)
        if not piece:
            return size, sha.hexdigest()
        sha.update(piece)
        size += len(piece)


form = cgi.FieldStorage()
item = form["file"] if form.list is not None and "file" in form else None

print("Content-Type: text/html; charset=utf-8")
print()
print("<!DOCTYPE html>")
print("<html><head><meta charset='utf-8'><title>Upload</title></head><body>")
if item is not None and not isinstance(item, list) and item.filename:
    size, sha256 = digest(item.file)
    # Browsers on Windows once sent the whole client path; only the base name matters.
    name = os.path.basename(item.filename.replace("\\", "/"))
    print("<h1>Upload received</h1>")
    print("<table border='1'>")
    print(f"<tr><th>Name</th><td>{esc(name)}</td></tr>")
    print(f"<tr><th>Size</th><td>{size} bytes</td></tr>")
    print(f"<tr><th>SHA-256</th><td><code>{sha256}</code></td></tr>")
    print(f"<tr><th>Type</th><td>{esc(item.type or 'unknown')}</td></tr>")
    print("</table>")
    note = form.getfirst("note", "")
    if note:
        print(f"<p>Note: {esc(note)}</p>")
    print("<p>The file was only measured, not stored.</p>")
else:
    print("<h1>Upload a file</h1>")
    print("<p>No file was received.</p>")
print("<form method='post' enctype='multipart/form-data'>")
print("<input type='file' name='file'> <button type='submit'>Upload</button></form>")
print("<p><a href='/'>Back</a></p>")
print("</body></html>")
