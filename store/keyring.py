"""The key ring and the barrier: the one place where secret values are encrypted.

Above the barrier values are plaintext (wrapped in `Sensitive`); below it the
database holds only blobs:

    blob = b"\x01" | key_id (4 bytes, big endian) | nonce (12) | AES-256-GCM(value) + tag

The associated data binds a blob to its owner and secret name, so a row
copied to another name or owner, or any edited byte, fails to decrypt. A kept
version of a value (secret_versions) is bound to its version number as well,
so a version row moved to another secret or another number fails too.
Data keys live in the `keyring` table, each wrapped by the master key with
its id as associated data. New values use the newest key; older keys stay
until `rotate_data_key` has re-encrypted every value.
"""

from __future__ import annotations

import functools
import os
import struct
import threading
from collections.abc import Callable, Iterable
from typing import Any, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .backend import Backend, Tx
from .clock import now_iso
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


def version_aad(owner: str, name: str, version: int) -> bytes:
    # A kept version's own label: never equal to a current value's associated data, so a
    # version row copied over the current ciphertext (or back) fails to decrypt too.
    return b"logic-secret-version\x00" + struct.pack(">Q", version) + secret_aad(owner, name)


def _what(owner: str, name: str, version: int | None = None) -> str:
    return f"secret {name} of {owner}" if version is None else f"version {version} of secret {name} of {owner}"


def _wrap_aad(key_id: int) -> bytes:
    return b"logic-keyring\x00%d" % key_id


_AUDIT_WRAP_AAD = b"logic-change-audit-key\x00"
AUDIT_KEY_INFO = b"logic-runtime change audit chain v1"


def _derive_audit_key(raw: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=AUDIT_KEY_INFO).derive(raw)


class KeyRing:
    """Unwrapped data keys, in memory only, for one master key."""

    def __init__(self, db: Backend, master_key: bytes, candidates: Callable[[], list[tuple[str, bytes]]] | None = None):
        self._db = db
        self._master = AESGCM(master_key)
        self._candidates = candidates  # where to look again if another process re-wrapped the ring
        self._keys: dict[int, AESGCM] = {}
        self._audit_key: bytes | None = None  # the change audit's MAC key, once read
        self._lock = threading.Lock()
        self._load(rediscover=False)  # opening must say which key works, not find another

    @classmethod
    def open(
        cls,
        db: Backend,
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
    def _unwrap_all(master: AESGCM, rows: Iterable[Any]) -> dict[int, AESGCM]:
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
        # A rotation holds this lock exclusively until it commits: a value sealed under a key
        # it is dropping would never decrypt again (another node's rotation included).
        self._db.lock("keyring", shared=True)
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
                conn.execute(
                    "INSERT INTO keyring (wrapped, created_at) VALUES (?, ?) RETURNING id", (b"", now_iso())
                ).fetchone()[0],
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

    def opens(self, master_key: bytes) -> bool:
        """Whether `master_key` unwraps the ring as stored now (inside the caller's transaction)."""
        try:
            self._unwrap_all(AESGCM(master_key), self._db.all("SELECT id, wrapped FROM keyring ORDER BY id"))
        except MasterKeyError:
            return False
        return True

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
            self._rewrap_audit_key(conn, new_master)
        self._master = new_master

    def _wrap(self, raw: bytes, key_id: int) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._master.encrypt(nonce, raw, _wrap_aad(key_id))

    # the change audit's key (store/changes.py) ----------------------------------
    # One random key, made once and wrapped by the master key like the data keys; a master
    # rotation re-wraps it, a data-key rotation leaves it alone, so every row ever written
    # still verifies. The chain is MACed under HKDF(key, AUDIT_KEY_INFO), never the raw key.

    def audit_mac_key(self, *, create: bool = False) -> bytes | None:
        """The change audit's MAC key; None while none exists (`create`: make it, inside the
        caller's write transaction). MasterKeyError if the stored key does not unwrap."""
        if self._audit_key is not None:
            return self._audit_key
        row = self._db.one("SELECT wrapped FROM change_audit_key WHERE id = 1")
        if row is None:
            if not create:
                return None
            raw = AESGCM.generate_key(bit_length=256)
            with self._db.transaction() as conn:
                conn.execute(
                    "INSERT INTO change_audit_key (id, wrapped, created_at) VALUES (1, ?, ?)",
                    (self._wrap_audit(self._master, raw), now_iso()),
                )
            key = _derive_audit_key(raw)
            # Kept only once committed: a rolled-back transaction must not leave us MACing
            # under a key nobody stored.
            self._db.after_commit(lambda: setattr(self, "_audit_key", key))
            return key
        wrapped = bytes(row[0])
        try:
            raw = self._unwrap_audit(self._master, wrapped)
        except InvalidTag:
            self.reload()  # another process may have re-wrapped the ring (and this key)
            try:
                raw = self._unwrap_audit(self._master, wrapped)
            except InvalidTag:
                raise MasterKeyError("the change audit's key does not unwrap under the master key") from None
        self._audit_key = _derive_audit_key(raw)
        return self._audit_key

    def _rewrap_audit_key(self, conn: Tx, new_master: AESGCM) -> None:
        row = conn.execute("SELECT wrapped FROM change_audit_key WHERE id = 1").fetchone()
        if row is None:
            return
        try:
            raw = self._unwrap_audit(self._master, bytes(row[0]))
        except InvalidTag:
            raise MasterKeyError("the change audit's key does not unwrap under the master key") from None
        conn.execute("UPDATE change_audit_key SET wrapped = ? WHERE id = 1", (self._wrap_audit(new_master, raw),))

    @staticmethod
    def _wrap_audit(master: AESGCM, raw: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + master.encrypt(nonce, raw, _AUDIT_WRAP_AAD)

    @staticmethod
    def _unwrap_audit(master: AESGCM, wrapped: bytes) -> bytes:
        return master.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _AUDIT_WRAP_AAD)

    # the barrier ------------------------------------------------------------

    def seal(
        self, value: str, owner: str, name: str, *, key_id: int | None = None, version: int | None = None
    ) -> bytes:
        """A blob for the current value of (owner, name), or with `version` for a kept version."""
        key_id = self.active_id if key_id is None else key_id
        nonce = os.urandom(NONCE_BYTES)
        aad = secret_aad(owner, name) if version is None else version_aad(owner, name, version)
        sealed = self._keys[key_id].encrypt(nonce, value.encode("utf-8"), aad)
        return _HEADER.pack(BLOB_VERSION, key_id) + nonce + sealed

    def unseal(self, blob: bytes, owner: str, name: str, *, version: int | None = None) -> Sensitive:
        blob = bytes(blob)
        if len(blob) < _HEADER.size + NONCE_BYTES + 16:
            raise DecryptionError(f"{_what(owner, name, version)} cannot be decrypted: the stored value is truncated")
        blob_format, key_id = _HEADER.unpack_from(blob)
        if blob_format != BLOB_VERSION:
            raise DecryptionError(f"{_what(owner, name, version)} cannot be decrypted: unknown format {blob_format}")
        key = self._keys.get(key_id)
        if key is None:
            self.reload()  # another process may have rotated the ring
            key = self._keys.get(key_id)
            if key is None:
                raise DecryptionError(
                    f"{_what(owner, name, version)} cannot be decrypted: data key {key_id} is not in the key ring"
                )
        nonce_end = _HEADER.size + NONCE_BYTES
        aad = secret_aad(owner, name) if version is None else version_aad(owner, name, version)
        try:
            plain = key.decrypt(blob[_HEADER.size : nonce_end], blob[nonce_end:], aad)
        except InvalidTag:
            raise DecryptionError(
                f"{_what(owner, name, version)} cannot be decrypted: "
                "the stored value was altered or belongs to another secret"
            ) from None
        return Sensitive(plain.decode("utf-8"))

    def key_id_of(self, blob: bytes) -> int:
        return cast(int, _HEADER.unpack_from(bytes(blob))[1])
