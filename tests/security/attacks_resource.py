"""Resource-exhaustion attacks, as data, for the worker tests (they need process limits).

Each entry is (id, source, expected statuses). None of them may run in-process
in the test suite: they loop, allocate or sleep until a worker limit (wall
clock, CPU, memory) ends them. The worker tests run each through the real
pool and assert the run ends with one of the expected statuses while the
server and other runs carry on (security promise 4).
"""

from __future__ import annotations

TIMEOUT = ("timeout",)
MEMORY = ("memory_exceeded", "crashed", "timeout")

RESOURCE_ATTACKS: list[tuple[str, str, tuple[str, ...]]] = [
    ("infinite-loop", "def main(event):\n    while True:\n        pass\n", TIMEOUT),
    ("infinite-for", "import itertools\ndef main(event):\n    for _ in itertools.count():\n        pass\n", TIMEOUT),
    ("sum-huge-range", "def main(event):\n    return sum(range(10**12))\n", TIMEOUT),
    ("huge-power", "def main(event):\n    return 10**10**10 > 0\n", TIMEOUT + MEMORY),
    ("huge-power-8", "def main(event):\n    x = 10**10**8\n    return 1\n", TIMEOUT + MEMORY),
    ("huge-string", "def main(event):\n    s = 'x' * (10**10)\n    return len(s)\n", MEMORY),
    ("doubling-list", "def main(event):\n    a = [0]\n    while True:\n        a = a + a\n", MEMORY),
    (
        "growing-dict",
        "def main(event):\n    d = {}\n    i = 0\n    while True:\n        d[i] = 'x' * 1000\n        i += 1\n",
        MEMORY,
    ),
    ("bytearray-bomb", "def main(event):\n    b = bytearray(10**11)\n    return 1\n", MEMORY),
    (
        "zlib-bomb",
        "import zlib\ndef main(event):\n    z = zlib.compress(b'\\0' * (10**8))\n"
        "    out = [zlib.decompress(z) for _ in range(100)]\n    return 1\n",
        MEMORY,
    ),
    (
        "regex-backtracking",
        "import re\ndef main(event):\n    return bool(re.match(r'(a+)+$', 'a' * 64 + 'b'))\n",
        TIMEOUT,
    ),
    ("sleep-forever", "import time\ndef main(event):\n    time.sleep(10**6)\n", TIMEOUT),
    ("sleep-loop", "import time\ndef main(event):\n    while True:\n        time.sleep(0.01)\n", TIMEOUT),
    ("factorial", "import math\ndef main(event):\n    return math.factorial(10**8) > 0\n", TIMEOUT + MEMORY),
    (
        "pbkdf2-iterations",
        "import hashlib\ndef main(event):\n    return hashlib.pbkdf2_hmac('sha256', b'p', b's', 10**9).hex()\n",
        TIMEOUT,
    ),
    ("print-flood-forever", "def main(event):\n    while True:\n        print('x' * 1000)\n", TIMEOUT),
    (
        "log-flood-forever",
        "import logic\ndef main(event):\n    while True:\n        logic.log.info('y' * 1000)\n",
        TIMEOUT,
    ),
    (
        "publish-flood",
        "import logic\ndef main(event):\n    while True:\n        try:\n"
        "            logic.publish('e', 'x')\n        except logic.PublishLimitError:\n"
        "            pass\n",
        TIMEOUT,
    ),
    (
        "deep-recursion-catching",
        "def f(n):\n    try:\n        return f(n + 1)\n    except RecursionError:\n"
        "        return f(n + 1)\ndef main(event):\n    return f(0)\n",
        TIMEOUT + ("error",),
    ),
    ("generator-exhaust", "def main(event):\n    return list(x for x in iter(int, 1))\n", MEMORY),
    (
        "permutations",
        "import itertools\ndef main(event):\n    return len(list(itertools.permutations(range(20))))\n",
        MEMORY,
    ),
    ("big-int-str", "def main(event):\n    x = 7 ** 10**7\n    return str(x)[:5]\n", TIMEOUT + ("error",)),
    (
        "busy-catch-base-exception",
        "def main(event):\n    while True:\n        try:\n            while True:\n"
        "                pass\n        except BaseException:\n            pass\n",
        TIMEOUT,
    ),
]
