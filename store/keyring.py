"""The key ring and the barrier: the one place where secret values are encrypted.

Above the barrier values are plaintext (wrapped in `Sensitive`); below it the
database holds only blobs:

    blob = b"\x01" | key_id (4 bytes, big endian) | nonce (12) | AES-256-GCM(value) + tag

The associated data binds a blob to its owner and secret name, so a row
copied to another name or owner, or any edited byte, fails to decrypt.
Data keys live in the `keyring` table, each wrapped by the master key with
its id as associated data. New values use the newest key; older keys stay
until `rotate_data_key` has re-encrypted every value.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import struct
import threading
from collections.abc import Callable, Iterable
from typing import cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .clock import now_iso
from .database import Database
from .errors import DecryptionError, MasterKeyError
from .sensitive import Sensitive

BLOB_VERSION = 1
_HEADER = struct.Struct(">BI")
NONCE_BYTES = 12


@functools.lru_cache(maxsize=4096)  # every secret read needs it: ~1 us of its ~8
def secret_aad(owner: str, name: str) -> bytes:
    # Length-prefixed, so no two (owner, name) pairs share associated data even
    # if a caller ever lets a separator character through.
    o, n = owner.encode("utf-8"), name.encode("utf-8")
    return b"logic-secret\x00" + struct.pack(">I", len(o)) + o + struct.pack(">I", len(n)) + n


def _what(owner: str, name: str) -> str:
    return f"secret {name} of {owner}"


def _wrap_aad(key_id: int) -> bytes:
    return b"logic-keyring\x00%d" % key_id


class KeyRing:
    """Unwrapped data keys, in memory only, for one master key."""

    def __init__(
        self, db: Database, master_key: bytes, candidates: Callable[[], list[tuple[str, bytes]]] | None = None
    ):
        self._db = db
        self._master = AESGCM(master_key)
        self._candidates = candidates  # where to look again if another process re-wrapped the ring
        self._keys: dict[int, AESGCM] = {}
        self._lock = threading.Lock()
        self._load(rediscover=False)  # opening must say which key works, not find another

    @classmethod
    def open(
        cls,
        db: Database,
        candidates: Callable[[], list[tuple[str, bytes]]] | list[tuple[str, bytes]],
    ) -> tuple[KeyRing, str]:
        """Open with the first candidate master key that unwraps the ring."""
        find = candidates if callable(candidates) else (lambda: candidates)
        for source, key in find():
            try:
                return cls(db, key, find), source
            except MasterKeyError:
                continue
        raise MasterKeyError("the master key does not match this database")

    def reload(self) -> None:
        self._load(rediscover=True)

    def _load(self, *, rediscover: bool) -> None:
        rows = self._db.all("SELECT id, wrapped FROM keyring ORDER BY id")
        try:
            keys = self._unwrap_all(self._master, rows)
        except MasterKeyError:
            # `logic keys rotate --master` in another process re-wrapped the ring: the new
            # key is in master.key (or master.key.new) now. Without this a running server
            # fails every secret read until it is restarted.
            if not rediscover or self._candidates is None:
                raise
            for _source, key in self._candidates():
                try:
                    keys = self._unwrap_all(AESGCM(key), rows)
                except MasterKeyError:
                    continue
                self._master = AESGCM(key)
                break
            else:
                raise
        with self._lock:
            self._keys = keys

    @staticmethod
    def _unwrap_all(master: AESGCM, rows: Iterable[sqlite3.Row]) -> dict[int, AESGCM]:
        keys = {}
        for row in rows:
            wrapped = bytes(row["wrapped"])
            try:
                raw = master.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _wrap_aad(row["id"]))
            except InvalidTag:
                raise MasterKeyError("the master key does not match this database") from None
            keys[row["id"]] = AESGCM(raw)
        return keys

    def refresh(self) -> None:
        """Catch up with a ring another process rotated (call inside a write transaction).

        Threat: a long-running server sealing new values under a data key that a
        `logic keys rotate` elsewhere has already dropped, leaving them undecryptable.
        """
        ids = [r[0] for r in self._db.all("SELECT id FROM keyring ORDER BY id")]
        if ids != self.key_ids:
            self.reload()

    @property
    def active_id(self) -> int:
        if not self._keys:
            raise MasterKeyError("the key ring is empty: run `logic init`")
        return max(self._keys)

    @property
    def key_ids(self) -> list[int]:
        return sorted(self._keys)

    def add_key(self) -> int:
        """Create, wrap and store a new data key (inside the caller's transaction)."""
        raw = AESGCM.generate_key(bit_length=256)
        with self._db.transaction() as conn:
            key_id = cast(
                int,
                conn.execute(  # an INSERT's lastrowid is set
                    "INSERT INTO keyring (wrapped, created_at) VALUES (x'', ?)", (now_iso(),)
                ).lastrowid,
            )
            conn.execute("UPDATE keyring SET wrapped = ? WHERE id = ?", (self._wrap(raw, key_id), key_id))
        with self._lock:
            self._keys = {**self._keys, key_id: AESGCM(raw)}
        return key_id

    def drop_keys_except(self, keep: int) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM keyring WHERE id != ?", (keep,))
        with self._lock:
            self._keys = {k: v for k, v in self._keys.items() if k == keep}

    def rewrap(self, new_master_key: bytes) -> None:
        """Re-wrap every data key under a new master key (inside the caller's transaction)."""
        new_master = AESGCM(new_master_key)
        with self._db.transaction() as conn:
            for row in conn.execute("SELECT id, wrapped FROM keyring").fetchall():
                wrapped = bytes(row["wrapped"])
                try:
                    raw = self._master.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _wrap_aad(row["id"]))
                except InvalidTag:
                    raise MasterKeyError("the master key does not match this database") from None
                nonce = os.urandom(NONCE_BYTES)
                conn.execute(
                    "UPDATE keyring SET wrapped = ? WHERE id = ?",
                    (nonce + new_master.encrypt(nonce, raw, _wrap_aad(row["id"])), row["id"]),
                )
        self._master = new_master

    def _wrap(self, raw: bytes, key_id: int) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._master.encrypt(nonce, raw, _wrap_aad(key_id))

    # the barrier ------------------------------------------------------------

    def seal(self, value: str, owner: str, name: str, *, key_id: int | None = None) -> bytes:
        key_id = self.active_id if key_id is None else key_id
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[key_id].encrypt(nonce, value.encode("utf-8"), secret_aad(owner, name))
        return _HEADER.pack(BLOB_VERSION, key_id) + nonce + sealed

    def unseal(self, blob: bytes, owner: str, name: str) -> Sensitive:
        blob = bytes(blob)
        if len(blob) < _HEADER.size + NONCE_BYTES + 16:
            raise DecryptionError(f"{_what(owner, name)} cannot be decrypted: the stored value is truncated")
        version, key_id = _HEADER.unpack_from(blob)
        if version != BLOB_VERSION:
            raise DecryptionError(f"{_what(owner, name)} cannot be decrypted: unknown format {version}")
        key = self._keys.get(key_id)
        if key is None:
            self.reload()  # another process may have rotated the ring
            key = self._keys.get(key_id)
            if key is None:
                raise DecryptionError(
                    f"{_what(owner, name)} cannot be decrypted: data key {key_id} is not in the key ring"
                )
        nonce_end = _HEADER.size + NONCE_BYTES
        try:
            plain = key.decrypt(blob[_HEADER.size : nonce_end], blob[nonce_end:], secret_aad(owner, name))
        except InvalidTag:
            raise DecryptionError(
                f"{_what(owner, name)} cannot be decrypted: the stored value was altered or belongs to another secret"
            ) from None
        return Sensitive(plain.decode("utf-8"))

    def key_id_of(self, blob: bytes) -> int:
        return cast(int, _HEADER.unpack_from(bytes(blob))[1])
