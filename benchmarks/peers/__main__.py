"""``python -m benchmarks.peers CASE --args JSON --out FILE``: a case's peer side (see
:func:`benchmarks.peers.serve`)."""

import sys

from benchmarks.peers import serve

serve(sys.argv[1:])
