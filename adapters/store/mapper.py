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

import functools
import json
from collections.abc import Callable, Hashable
from typing import Any, cast

from eventsourcing.persistence import (
    InfrastructureFactory,
    Mapper,
    StoredEvent,
    Transcoder,
    find_id_convertor,
)
from eventsourcing.utils import resolve_topic

from simledger.domain.errors import InvalidInput, StoreUnreadable, TamperedEvent

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
    """``Mapper`` whose decoding failures name their cause (:class:`StoreUnreadable`), and
    which decodes a row without building a ``StoredEvent`` (:meth:`decode_row`).

    Decoding is eventsourcing's ``Mapper.to_domain_event`` step by step (cipher, compressor,
    transcoder, id convertor, upcasters, then the event object without ``__init__``), with
    the event class, id convertor and class version looked up once per topic instead of
    once per event: a replay decodes millions of events of a dozen classes.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._convertors: dict[tuple[str, type], Callable[[Any], Any]] = {}
        self.settings_fit = False
        """Set when :meth:`check_readable` found the store's first event readable: from
        then on an event that does not decode was altered (:class:`TamperedEvent`), not
        written with other settings."""

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        return self.decode_row(
            stored_event.originator_id,
            stored_event.originator_version,
            stored_event.topic,
            stored_event.state,
        )

    def decode_row(self, originator_id: Any, version: int, topic: str, state: bytes) -> Any:
        """The domain event stored as (``originator_id``, ``version``, ``topic``, ``state``)."""
        convert = self._convertors.get((topic, type(originator_id)))
        if convert is None:
            try:
                cls = event_class(topic)[0]
            except Exception:
                raise TamperedEvent(
                    str(originator_id), version, f"has an unknown topic {topic!r}", topic=topic
                ) from None
            convert = find_id_convertor(cast(Any, cls), cast(Hashable, type(originator_id)))
            self._convertors[topic, type(originator_id)] = convert
        try:
            if self.cipher is not None:
                state = self.cipher.decrypt(bytes(state))
            if self.compressor is not None:
                state = self.compressor.decompress(bytes(state))
            event_state: dict[str, Any] = self.transcoder.decode(state)
        except Exception as error:
            if self.settings_fit:
                raise TamperedEvent(
                    str(originator_id), version, f"does not decode ({error})", topic=topic
                ) from error
            stored = StoredEvent(originator_id, version, topic, bytes(state))
            why = diagnose(self, stored) or f"cannot be decoded: {error}"
            raise StoreUnreadable(f"{_where(stored)} {why}") from error
        if not isinstance(event_state, dict):
            raise TamperedEvent(
                str(originator_id),
                version,
                f"decodes to a {type(event_state).__name__}, not to an event's fields",
                topic=topic,
            )
        event_state["originator_id"] = convert(originator_id)
        event_state["originator_version"] = version
        try:
            return event_from_state(topic, event_state)
        except Exception as error:  # an upcaster missing the fields it expects
            raise TamperedEvent(
                str(originator_id),
                version,
                f"does not upcast ({type(error).__name__}: {error})",
                topic=topic,
            ) from error

    def check_readable(self, stored_event: StoredEvent) -> None:
        """Raise :class:`StoreUnreadable` when this mapper's cipher settings do not fit
        ``stored_event`` (the ledger checks the store's first event when it opens)."""
        why = diagnose(self, stored_event)
        if why is not None:
            raise StoreUnreadable(f"{_where(stored_event)} {why}")
        self.settings_fit = True


@functools.cache
def event_class(topic: str) -> tuple[type[Any], int]:
    """The event class of ``topic`` and its class version, resolved once per topic."""
    cls = resolve_topic(topic)
    return cls, getattr(cls, "class_version", 1)


def upcast(cls: type[Any], class_version: int, state: dict[str, Any]) -> None:
    """Bring ``state`` (an event's stored fields, or a snapshot's aggregate state), written
    at the version its ``class_version`` key names (1 without it), up to ``class_version``
    with the class's ``upcast_vN_vN+1`` methods in turn, as eventsourcing does; the key is
    removed (ARCHITECTURE.md, "Event versions")."""
    from_version = state.pop("class_version", 1)
    while from_version < class_version:
        getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
        from_version += 1


def event_from_state(topic: str, state: dict[str, Any]) -> Any:
    """The domain event of ``topic`` from its stored fields (``originator_id`` and
    ``originator_version`` set; ``state`` becomes the event's ``__dict__``), upcast to the
    class's version, as ``Mapper.to_domain_event`` makes it."""
    cls, class_version = event_class(topic)
    upcast(cls, class_version, state)
    event = object.__new__(cls)
    object.__setattr__(event, "__dict__", state)
    return event


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
