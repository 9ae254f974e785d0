"""The example database of the fuzz tier: where failures are saved, so that any run replays them.

Hypothesis saves every failing example (the shrunk one, and the steps on the way) into a
database and, before generating, replays what is saved for the test (``Phase.reuse``). The
suite uses its parts as they are:

- ``redis://HOST:PORT/N`` (or ``rediss://``, ``unix://``):
  :class:`hypothesis.extra.redis.RedisExampleDatabase`, which any number of machines and xdist
  workers save into at once (the ``redis`` extra: ``pip install 'autograd-conformance[redis]'``);
- any other value is a directory: :class:`hypothesis.database.DirectoryBasedExampleDatabase`;
- ``read_only=True`` wraps either in :class:`hypothesis.database.ReadOnlyDatabase`, for the
  CI gate: it replays what the fleet found and never writes.

The same property runs on every engine, so the plugin gives each run the key
:func:`example_key` (``ENGINE/semantic::property[case]``): a failure found on one engine is
replayed on that engine only. In Redis the keys read ``autograd-conformance:torch/sgd::...``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase, ReadOnlyDatabase

DATABASE_ENV = "CONFORMANCE_DATABASE"
FUZZ_DIRECTORY = ".hypothesis/conformance-fuzz"
"""The fuzz profile's database when none is given: a directory under the working directory."""
REDIS_SCHEMES = ("redis", "rediss", "unix")
REDIS_KEY_PREFIX = b"autograd-conformance:"
REDIS_TIMEOUT_S = 30.0
"""How long a Redis command may wait: a server that stops answering (a host gone without a
word) ends the run with an error instead of hanging it."""
EXPIRE_AFTER = timedelta(days=8)
"""RedisExampleDatabase's own default: a key nobody saved into or replayed for 8 days expires,
so a weekly job still finds last week's failures."""


class DatabaseError(Exception):
    """An example database that cannot be used (bad URL, server unreachable, not a directory)."""


@dataclass(frozen=True)
class Database:
    """An opened example database."""

    location: str
    """The URL or directory as given, a password hidden: for messages."""
    examples: ExampleDatabase
    errors: tuple[type[Exception], ...] = ()
    """What it raises when it fails mid-run (its server gone): not a failure of the engine."""


def example_key(engine: str, property_id: str) -> bytes:
    """The database key of a property's failures on an engine.

    >>> example_key("torch", "sgd::test_hyperparameter[nesterov]")
    b'torch/sgd::test_hyperparameter[nesterov]'
    """
    return f"{engine}/{property_id}".encode()


def open_database(location: str, *, read_only: bool = False) -> Database:
    """The database at ``location`` (a Redis URL or a directory), checked to be usable now:
    a Redis server must answer, a directory must exist (read-only) or be creatable. Raises
    :class:`DatabaseError` naming ``location`` if not; the CI gate opens
    ``open_database("redis://HOST:6379/0", read_only=True)``."""
    if "://" in location:
        database = _redis(location)
    else:
        database = Database(location, _directory(location, read_only=read_only))
    if read_only:
        return Database(database.location, ReadOnlyDatabase(database.examples), database.errors)
    return database


def _redis(url: str) -> Database:
    shown = _hide_password(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL"
        raise DatabaseError(f"example database {shown!r}: {exc}") from None
    if parts.scheme not in REDIS_SCHEMES:
        raise DatabaseError(f"example database {shown!r}: unsupported scheme {parts.scheme!r} "
                            "(expected redis://HOST:PORT/N, rediss://..., unix://PATH or a directory)")
    number = parts.path.strip("/")
    if parts.scheme != "unix" and number and not number.isdigit():
        # redis-py ignores a database number it cannot read, and a typo would then share
        # database 0 with whatever else uses the server.
        raise DatabaseError(f"example database {shown!r}: {parts.path!r} is not a database number")
    try:
        import redis
        from hypothesis.extra.redis import RedisExampleDatabase
    except ImportError:
        raise DatabaseError(f"example database {shown!r} needs the redis client: "
                            "pip install 'autograd-conformance[redis]'") from None
    try:
        client = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_S,
                                      socket_connect_timeout=REDIS_TIMEOUT_S)
        client.ping()
    except ValueError as exc:
        raise DatabaseError(f"example database {shown!r}: {exc}") from None
    except redis.RedisError as exc:
        raise DatabaseError(f"cannot reach the example database {shown!r}: {exc}") from None
    examples = RedisExampleDatabase(client, key_prefix=REDIS_KEY_PREFIX, expire_after=EXPIRE_AFTER)
    return Database(shown, examples, errors=(redis.RedisError,))


def _directory(location: str, *, read_only: bool) -> DirectoryBasedExampleDatabase:
    path = Path(location)
    if read_only and not path.is_dir():
        # A gate pointed at the wrong place would replay nothing and pass.
        raise DatabaseError(f"example database {location!r}: no such directory to replay from")
    try:
        path.mkdir(parents=True, exist_ok=True)  # Hypothesis would fail to save without a word
    except OSError as exc:
        raise DatabaseError(f"example database {location!r}: cannot create the directory: "
                            f"{exc.strerror or exc}") from None
    return DirectoryBasedExampleDatabase(path)


def _hide_password(url: str) -> str:
    """``redis://:secret@host:6379/0`` → ``redis://:***@host:6379/0``."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return url
    return url if password is None else url.replace(f":{password}@", ":***@", 1)
