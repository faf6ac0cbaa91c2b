#!/usr/bin/env python3
"""Reports the process state a fresh CGI process would have; nothing of leaky.py may show."""
import os
import signal
import subprocess
import sys

import cgi

mask = os.umask(0o022)
os.umask(mask)
state = {
    "leaked_var": os.environ.get("LEAKED_VAR"),
    "leaked_putenv_subprocess": subprocess.run(["sh", "-c", "echo -n ${LEAKED_PUTENV:-none}"],
                                               capture_output=True, text=True).stdout,
    "query_in_subprocess": subprocess.run(["sh", "-c", "echo -n $QUERY_STRING"],
                                          capture_output=True, text=True).stdout,
    "os_popen": os.popen("echo -n $HTTP_X_TEST").read(),
    "cwd_is_script_dir": os.getcwd() == os.path.dirname(os.path.abspath(__file__)),
    "argv": sys.argv[1:],
    "path0_is_script_dir": sys.path[0] == os.path.dirname(os.path.abspath(__file__)),
    "leaked_path": "/leaked/path" in sys.path,
    "cgi_maxlen": cgi.maxlen,
    "stderr_is_stdout": sys.stderr is sys.stdout,
    "leaky_global": "GLOBAL_FROM_LEAKY" in globals(),
    "sigusr1_default": signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None),
    "umask": oct(mask),
    "name": __name__,
    "runner_env_visible": "CGIRT_RUNNER_SECRET" in os.environ,
}
rc = os.system("test \"$QUERY_STRING\" = check")
state["os_system_sees_request"] = rc == 0
print("Content-Type: text/plain")
print()
for key in sorted(state):
    print(f"{key}={state[key]!r}")
