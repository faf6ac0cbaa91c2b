#!/usr/bin/env python3
"""Show the CGI variables this script received: the RFC 3875 ones and the HTTP_* headers.

Nothing else from the environment is shown: a server's own variables are none of a
visitor's business.
"""

import html
import os

META_VARIABLES = (
    "AUTH_TYPE", "CONTENT_LENGTH", "CONTENT_TYPE", "GATEWAY_INTERFACE", "PATH_INFO",
    "PATH_TRANSLATED", "QUERY_STRING", "REMOTE_ADDR", "REMOTE_HOST", "REMOTE_IDENT",
    "REMOTE_USER", "REQUEST_METHOD", "SCRIPT_NAME", "SERVER_NAME", "SERVER_PORT",
    "SERVER_PROTOCOL", "SERVER_SOFTWARE",
)


def esc(text):
    """HTML-escape, and write non-ASCII as character references so any output encoding works."""
    return html.escape(text).encode("ascii", "xmlcharrefreplace").decode("ascii")


names = [n for n in META_VARIABLES if n in os.environ]
names += sorted(n for n in os.environ if n.startswith("HTTP_"))

print("Content-Type: text/html; charset=utf-8")
print()
print("<!DOCTYPE html>")
print("<html><head><meta charset='utf-8'><title>CGI variables</title></head><body>")
print("<h1>CGI variables</h1>")
print("<table border='1'><tr><th>Name</th><th>Value</th></tr>")
for name in names:
    print(f"<tr><td>{esc(name)}</td><td>{esc(os.environ[name])}</td></tr>")
print("</table>")
print("<p><a href='/'>Back</a></p>")
print("</body></html>")
