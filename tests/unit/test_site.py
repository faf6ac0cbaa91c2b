"""The site contract shared by runner and gateway: which scripts are Python."""

from __future__ import annotations

import pytest

from cgirt.site import is_python


@pytest.mark.parametrize("path, first_line, expected", [
    ("/s/cgi-bin/a.py", b"", True),  # the extension alone decides
    ("/s/cgi-bin/a.py", b"#!/bin/sh\n", True),
    ("/s/cgi-bin/run", b"#!/usr/bin/python\n", True),
    ("/s/cgi-bin/run", b"#!/usr/bin/python3\n", True),
    ("/s/cgi-bin/run", b"#!/usr/local/bin/python3.13 -u\n", True),
    ("/s/cgi-bin/run", b"#! /usr/bin/python3\r\n", True),  # a space after #!, CRLF
    ("/s/cgi-bin/run", b"#!/usr/bin/env python3\n", True),
    ("/s/cgi-bin/run", b"#!/usr/bin/env -S python3 -u\n", True),
    ("/s/cgi-bin/run", b"#!/usr/bin/env -u LANG PYTHONIOENCODING=utf-8 python3\n", True),
    ("/s/cgi-bin/run", b"#!/usr/bin/env /opt/py/bin/python3.11\n", True),
    ("/s/cgi-bin/run", b"#!python3", True),
    # Perl whose path says python: the runner once ran it in-process as Python.
    ("/s/cgi-bin/run.pl", b"#!/opt/mypython/bin/perl\n", False),
    ("/s/cgi-bin/run.pl", b"#!/opt/python/bin/perl -w\n", False),
    ("/s/cgi-bin/run", b"#!/usr/bin/env perl python3\n", False),  # env runs perl
    ("/s/cgi-bin/run", b"#!/usr/bin/pythonista\n", False),
    ("/s/cgi-bin/run", b"#!/usr/bin/python2.7\n", False),
    ("/s/cgi-bin/run", b"#!/usr/bin/python3.x\n", False),
    ("/s/cgi-bin/run", b"#!/bin/sh\n# python\n", False),  # only the first line counts
    ("/s/cgi-bin/run", b"# python3\n", False),
    ("/s/cgi-bin/run", b"#!\n", False),
    ("/s/cgi-bin/run", b"#!/usr/bin/env\n", False),
    ("/s/cgi-bin/run", b"", False),
    ("/s/cgi-bin/python3", b"", False),  # the script's own name is not its interpreter
])
def test_is_python(path: str, first_line: bytes, expected: bool) -> None:
    assert is_python(path, first_line) is expected
