#!/usr/bin/python3
# A script that imports three helper modules of its own site (share-nothing: each request
# executes them again, from cached code objects).
import helper_html
import helper_text
import helper_time

print("Content-Type: text/html; charset=utf-8")
print()
print(helper_html.page(helper_text.title("hello from three helpers"), helper_time.stamp()))
