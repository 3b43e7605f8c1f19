"""The ledger's event mapper: eventsourcing's ``Mapper`` with clear errors for stores that
cannot be read with the settings given, above all stores encrypted at rest.

eventsourcing encrypts each stored event (and snapshot) when ``CIPHER_TOPIC`` names a
cipher (``eventsourcing.cipher:AESCipher``, AES-GCM from ``pycryptodome``) and
``CIPHER_KEY`` holds its key. Opening such a store without the key, with another key, or a
plain store with a key makes the library's mapper fail with a decoding error about UTF-8
or a MAC check; :class:`LedgerMapper` turns those into :class:`StoreUnreadable`, saying
which case it is. :func:`construct_mapper` does the same for bad cipher settings.
"""

from __future__ import annotations

import json
from typing import Any

from eventsourcing.persistence import (
    InfrastructureFactory,
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
    Transcoder,
)

from simledger.domain.errors import InvalidInput, StoreUnreadable

SETTINGS_HELP = (
    "set CIPHER_TOPIC=eventsourcing.cipher:AESCipher and CIPHER_KEY (and COMPRESSOR_TOPIC, "
    "if one was used) as they were when the events were written"
)


def _plain_json(state: bytes) -> bool:
    """Whether ``state`` is the transcoder's JSON text (an object), not ciphertext (which
    may well start with a ``{``: its first bytes are a random nonce)."""
    try:
        return isinstance(json.loads(state), dict)
    except ValueError:
        return False


def diagnose(mapper: Mapper[Any], stored: StoredEvent) -> str | None:
    """Why ``stored`` cannot be read with ``mapper``'s cipher and compressor settings, or
    None when those settings fit it (its JSON may still be damaged)."""
    original = bytes(stored.state)
    state = original
    try:
        if mapper.cipher is not None:
            state = mapper.cipher.decrypt(state)
        if mapper.compressor is not None:
            state = mapper.compressor.decompress(state)
    except Exception:
        if mapper.cipher is not None and _plain_json(original):
            return (
                "is not encrypted, but CIPHER_KEY is set: the store was written without a "
                "cipher; open it without CIPHER_TOPIC/CIPHER_KEY"
            )
        if mapper.cipher is not None:
            return (
                "cannot be decrypted with this CIPHER_KEY: it is not the key the store was "
                "written with (or the stored bytes were altered)"
            )
        return "cannot be decompressed: check COMPRESSOR_TOPIC"
    if not _plain_json(state):
        return f"is encrypted (or compressed) and this ledger has no key for it: {SETTINGS_HELP}"
    return None


def _where(stored: StoredEvent) -> str:
    name = stored.topic.rpartition(":")[2]
    return f"stored event {name} of {stored.originator_id} (version {stored.originator_version})"


class LedgerMapper(Mapper[str]):
    """``Mapper`` whose decoding failures name their cause (:class:`StoreUnreadable`)."""

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        try:
            return super().to_domain_event(stored_event)
        except MapperDeserialisationError as error:
            why = diagnose(self, stored_event) or f"cannot be decoded: {error.__cause__ or error}"
            raise StoreUnreadable(f"{_where(stored_event)} {why}") from error

    def check_readable(self, stored_event: StoredEvent) -> None:
        """Raise :class:`StoreUnreadable` when this mapper's cipher settings do not fit
        ``stored_event`` (the ledger checks the store's first event when it opens)."""
        why = diagnose(self, stored_event)
        if why is not None:
            raise StoreUnreadable(f"{_where(stored_event)} {why}")


def construct_mapper(factory: InfrastructureFactory[Any], transcoder: Transcoder) -> Mapper[str]:
    """The application's mapper (a :class:`LedgerMapper` unless ``MAPPER_TOPIC`` names
    another), with a clear error for cipher settings that cannot work."""
    mapper_class = None if factory.env.get(factory.MAPPER_TOPIC) else LedgerMapper
    try:
        mapper: Mapper[str] = factory.mapper(transcoder=transcoder, mapper_class=mapper_class)
    except ImportError as error:
        raise InvalidInput(
            f"the cipher {factory.env.get(factory.CIPHER_TOPIC)!r} cannot be loaded ({error}); "
            "eventsourcing.cipher:AESCipher needs pycryptodome: pip install 'simledger[crypto]'",
            rule="R-ES3",
        ) from None
    except (OSError, ValueError) as error:  # no key, a key that is not base64 or a bad size
        raise InvalidInput(
            f"bad cipher settings ({error}): CIPHER_KEY must be a base64 AES key of 16, 24 "
            'or 32 bytes, e.g. from python -c "from eventsourcing.cipher import AESCipher; '
            'print(AESCipher.create_key(32))"',
            rule="R-ES3",
        ) from None
    return mapper
