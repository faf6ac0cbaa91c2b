# Fork mode's warm-up request (cgirt/runner/forkmode.py): the template runs this once, before
# its first fork, through the whole path a request's child takes. Not a site's script.
print("Content-Type: text/plain")
print()
print("warm")
