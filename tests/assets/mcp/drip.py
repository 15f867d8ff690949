"""A slow link in front of the working test server: `python drip.py SECONDS_PER_BYTE`. The
handshake and tool list pass at full speed; every tool result reaches the client one byte at a
time, so a whole answer takes far longer than a short deadline."""

import os
import subprocess
import sys
import threading
import time

here = os.path.dirname(os.path.abspath(__file__))
delay = float(sys.argv[1])
child = subprocess.Popen(
    [sys.executable, os.path.join(here, "server.py"), "working"],
    stdin=subprocess.PIPE,
    stdout=subprocess.PIPE,
)


def forward_requests():
    for line in sys.stdin.buffer:
        child.stdin.write(line)
        child.stdin.flush()
    child.stdin.close()


threading.Thread(target=forward_requests, daemon=True).start()
out = sys.stdout.buffer
for line in child.stdout:
    slow = b'"content"' in line
    for i in range(len(line)) if slow else [None]:
        out.write(line[i : i + 1] if slow else line)
        out.flush()
        if slow:
            time.sleep(delay)
child.wait()
