"""The master key: where it comes from, and how a new one replaces it safely.

Order: `LOGIC_MASTER_KEY` (base64 of 32 bytes), else `<home>/master.key`
(written by `logic init`, mode 0600). During `logic keys rotate --master` the
new key is first written to `master.key.new`; the ring is re-wrapped in one
transaction; then the file is renamed over `master.key`. A crash at any point
leaves one of the two files able to open the ring, and `candidates()` offers
both, so the store stays usable.
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
from pathlib import Path

from .errors import MasterKeyError

KEY_BYTES = 32


def generate() -> bytes:
    return os.urandom(KEY_BYTES)


def encode(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def decode(text: str, *, source: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise MasterKeyError(f"the master key in {source} is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise MasterKeyError(f"the master key in {source} must be {KEY_BYTES} bytes, not {len(key)}")
    return key


def write_key_file(path: Path, key: bytes, *, replace: bool = True) -> bool:
    """Write atomically with mode 0600 from the first byte (no window where others can read).

    With `replace=False` (the first `logic init` of a home) a key file already there is
    kept and False returned: two inits racing on one home must end with the one key the
    database was made with, not whichever wrote last."""
    fd, name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)  # 0600, a name of its own
    tmp = Path(name)
    try:
        try:
            os.write(fd, (encode(key) + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if the name exists: never replaces
            except FileExistsError:
                return False
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return True


def pending_path(key_path: Path) -> Path:
    return key_path.with_name(key_path.name + ".new")


NEXT = "LOGIC_MASTER_KEY_NEXT"


def candidates(env_value: str | None, key_path: Path, next_value: str | None = None) -> list[tuple[str, bytes]]:
    """Keys that may open the ring, most likely first, each with where it came from: the
    key in use, a rotation's key not yet moved into place, and LOGIC_MASTER_KEY_NEXT."""
    found: list[tuple[str, bytes]] = []
    if env_value:
        found.append(("LOGIC_MASTER_KEY", decode(env_value, source="LOGIC_MASTER_KEY")))
    elif key_path.exists():
        found.append((str(key_path), decode(key_path.read_text(), source=str(key_path))))
    pending = pending_path(key_path)
    if pending.exists():
        found.append((str(pending), decode(pending.read_text(), source=str(pending))))
    if next_value:
        found.append((NEXT, decode(next_value, source=NEXT)))
    if not found:
        raise MasterKeyError(f"no master key: set LOGIC_MASTER_KEY or create {key_path} with `logic init`")
    return found


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
