#!/usr/bin/env python3
import locale
import os
import sys

NAMES = ("GATEWAY_INTERFACE", "REQUEST_METHOD", "QUERY_STRING", "SCRIPT_NAME", "PATH_INFO",
         "PATH_TRANSLATED", "SCRIPT_FILENAME", "CONTENT_LENGTH", "CONTENT_TYPE",
         "SERVER_PROTOCOL", "HTTP_X_TEST", "HTTP_PROXY", "REDIRECT_STATUS", "REDIRECT_URL",
         "LC_CTYPE", "LANG", "LC_ALL")
print("Content-Type: text/plain")
print()
for name in NAMES:
    print(f"{name}={os.environ.get(name, '<unset>')}")
print(f"argv={sys.argv[1:]}")
print(f"cwd={os.getcwd()}")
print(f"path0={sys.path[0]}")
# What a Python interpreter started by the web server makes of having no locale (PEP 538, 540).
print(f"utf8_mode={sys.flags.utf8_mode}")
print(f"preferred_encoding={locale.getpreferredencoding()}, {locale.getpreferredencoding(False)}")
