"""Real descriptors for in-process scripts: armed only when a script asks for them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from cgirt.runner.streams import uses_descriptors_by_number


@pytest.mark.parametrize("source", [
    "import os\nos.write(1, b'x')",
    "import os\nos.fstat(0)",
    "import os\nf = os.fdopen(1, 'wb')",
    "from os import write\nwrite(2, b'x')",
    "import select\nselect.select([0], [], [], 1)",
    "import os\ndef f():\n    return os.read(0, 10)",  # inside a function
])
def test_descriptors_used_by_number_are_found(source: str) -> None:
    assert uses_descriptors_by_number(compile(source, "s.py", "exec"))


@pytest.mark.parametrize("source", [
    "import sys\nsys.stdout.write('1')",
    "f = open('x')\nf.read(1)\nf.write(2)",
    "import os\nos.write(fd, b'x')",
    "import os\nos.read(3, 10)",
    "print(1, 2, 0)",
])
def test_other_code_is_not_taken_for_descriptor_use(source: str) -> None:
    assert not uses_descriptors_by_number(compile(source, "s.py", "exec"))


# In a process of its own: arming replaces its descriptors 0, 1 and 2.
PROGRAM = textwrap.dedent("""
    import io, json, os, subprocess, sys, tempfile
    from cgirt.runner.sandbox import LineTagger, RequestBody, text_stdout
    from cgirt.runner.streams import Descriptors

    sent, logged, seen = [], [], {}
    own = [os.fstat(fd) for fd in (0, 1, 2)]
    fds = Descriptors()
    fds.install(LineTagger)
    plain = compile("x = 1", "plain.py", "exec")
    stdout = text_stdout(sent.append)

    def begin(body=b""):
        data = io.BytesIO(body)
        fds.begin(plain, RequestBody(data.read, len(body)), stdout, sent.append, logged.append)

    begin()
    with tempfile.TemporaryFile() as f:  # what any script does: no descriptor of stdio
        f.write(b"x")
    import json as _again
    compile("y = 2", "c.py", "exec")
    stdout.write("unarmed\\n")
    stdout.flush()
    seen["ordinary"] = fds.armed
    fds.settle()
    fds.end()

    begin(b"the body")
    seen["fileno"] = stdout.fileno()
    seen["after_fileno"] = fds.armed
    stdout.write("printed\\n")
    subprocess.call(["sh", "-c", "echo child; cat; echo; echo to-log >&2"])
    fds.settle()
    fds.end()
    seen["restored"] = all(os.path.samestat(os.fstat(fd), own[fd]) for fd in (0, 1, 2))

    begin()  # a script's file object on fd 1, in a reference cycle as a script's globals are
    script = {}
    exec("import os\\nout = os.fdopen(1, 'wb')\\nout.write(b'via fdopen\\\\n')\\nout.flush()\\n"
         "def f(): pass\\n", script)
    del script
    fds.settle()
    fds.end()
    import gc
    gc.collect()  # nothing of the script's is left to close the process's fd 1 later
    seen["fd1_kept"] = os.path.samestat(os.fstat(1), own[1])

    begin()
    os.system("true")
    seen["system"] = fds.armed
    fds.settle()
    fds.end()
    seen["sent"] = b"".join(sent).decode()
    seen["logged"] = logged
    os.write(3, json.dumps(seen).encode())
""")


def test_arming_is_lazy_and_children_share_the_pipes() -> None:
    r, w = os.pipe()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", f"import os; os.dup2({w}, 3)\n" + PROGRAM],
            pass_fds=(w,), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        os.close(w)
        w = -1
        assert proc.returncode == 0, proc.stderr.decode()
        seen = json.loads(os.read(r, 65536))
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    assert seen["ordinary"] is False  # open, import, compile: no arming
    assert seen["fileno"] == 1 and seen["after_fileno"] is True
    # The child's line before the buffered print (as under classic CGI), the body via cat.
    assert seen["sent"] == "unarmed\nchild\nthe body\nprinted\nvia fdopen\n"
    assert seen["fd1_kept"] is True
    assert seen["logged"] == ["to-log"]
    assert seen["restored"] is True  # the process's own descriptors are back
    assert seen["system"] is True
