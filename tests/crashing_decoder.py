"""Decoding requests that crash or hang their worker on marked files: real decoding for every other file.

Handed to ``predict_to_csv(..., read=read_or_crash)``, these run in the decoding
workers in place of ``reading.read_chunk``: a file whose name holds ``CRASH`` kills the
worker with SIGSEGV (what a decoder bug in C does), one whose name holds ``HANG``
never returns, and every other file is decoded by ``read_chunk`` itself.
"""

import os
import signal
import time

from videoseq.reading import read_chunk


def read_or_crash(request):
    name = os.path.basename(request.path)
    if "CRASH" in name:
        os.kill(os.getpid(), signal.SIGSEGV)
    if "HANG" in name:
        time.sleep(3600)
    return read_chunk(request)
