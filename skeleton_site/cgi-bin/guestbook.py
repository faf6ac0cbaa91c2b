#!/usr/bin/env python3
"""A guestbook: entries are appended to a data file that is neither served nor executed.

The file lives in SITE/data/, beside htdocs/ and cgi-bin/, so visitors cannot download it
and it is never run as a script. Every write holds an exclusive lock on the file (fcntl),
so posts that arrive at the same moment are all kept, one line each.
"""

import datetime
import fcntl
import html
import json
import os
import warnings

with warnings.catch_warnings():
    # Deprecated since Python 3.11 (the legacy-cgi package provides it from 3.13 on);
    # without this, every request would write the warning to logs/error.log.
    warnings.simplefilter("ignore", DeprecationWarning)
    import cgi

DATA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "data",
                         "guestbook.txt")
MAX_NAME = 100
MAX_MESSAGE = 2000
SHOWN = 50


def esc(text):
    """HTML-escape, and write non-ASCII as character references so any output encoding works."""
    return html.escape(text).encode("ascii", "xmlcharrefreplace").decode("ascii")


def add_entry(name, message):
    os.makedirs(os.path.dirname(DATA_FILE), exist_ok=True)
    entry = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "name": name, "message": message}
    line = json.dumps(entry) + "\n"  # JSON keeps newlines in a message on one line
    with open(DATA_FILE, "a", encoding="utf-8") as data:
        fcntl.flock(data, fcntl.LOCK_EX)
        data.write(line)
        data.flush()
        os.fsync(data.fileno())


def read_entries():
    try:
        with open(DATA_FILE, encoding="utf-8") as data:
            fcntl.flock(data, fcntl.LOCK_SH)
            lines = data.readlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue  # a line damaged by hand-editing: skip it, keep the rest
    return entries


def page(error=""):
    entries = read_entries()
    if error:
        print("Status: 400 Bad Request")
    print("Content-Type: text/html; charset=utf-8")
    print()
    print("<!DOCTYPE html>")
    print("<html><head><meta charset='utf-8'><title>Guestbook</title></head><body>")
    print("<h1>Guestbook</h1>")
    if error:
        print(f"<p><strong>{esc(error)}</strong></p>")
    print("<form method='post'>")
    print(f"<p><label>Name <input name='name' maxlength='{MAX_NAME}'></label></p>")
    print("<p><label>Message <textarea name='message' rows='3' cols='40'></textarea></label></p>")
    print("<p><button type='submit'>Sign</button></p></form>")
    print(f"<p>{len(entries)} entries.</p>")
    for entry in reversed(entries[-SHOWN:]):
        print(f"<div class='entry'><p><strong>{esc(entry.get('name', ''))}</strong> "
              f"<small>{esc(entry.get('time', ''))}</small></p>")
        print(f"<p>{esc(entry.get('message', ''))}</p></div>")
    print("<p><a href='/'>Back</a></p>")
    print("</body></html>")


def post():
    form = cgi.FieldStorage()
    if form.list is None:
        return page("Send the form, please.")
    name = form.getfirst("name", "").strip()
    message = form.getfirst("message", "").strip()
    if not name or not message:
        return page("Both a name and a message are needed.")
    if len(name) > MAX_NAME or len(message) > MAX_MESSAGE:
        return page(f"Names are at most {MAX_NAME} and messages {MAX_MESSAGE} characters.")
    add_entry(name, message)
    # Post/redirect/get: reloading the result page must not sign the book twice.
    print("Status: 303 See Other")
    print(f"Location: {os.environ.get('SCRIPT_NAME', '/cgi-bin/guestbook.py')}")
    print("Content-Type: text/plain; charset=utf-8")
    print()
    print("Thank you for signing.")


if os.environ.get("REQUEST_METHOD", "GET") == "POST":
    post()
else:
    page()
