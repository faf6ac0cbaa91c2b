#!/usr/bin/env python3
import cgi
cgi.test()
