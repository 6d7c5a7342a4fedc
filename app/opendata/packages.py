"""OCDS 1.1 packages: release packages, record packages and compiled releases (DESIGN §4).

A package is a head (:class:`PackageInfo`: uri, publishedDate, publisher, the
extensions it uses) and the releases, or one record per ocid with its
``compiledRelease``. OCDS packages hold at least one release, so an export
with nothing to publish raises :class:`EmptyPackage` rather than write an
invalid package.

Writers stream: packages are written one release (or record) at a time from
iterators (:func:`app.opendata.export.export_releases` reads the database with
``yield_per``); nothing holds the whole ledger in memory.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from typing import IO, Any, Final

from app.errors import InvalidInput
from app.opendata.mapping import OCDS_VERSION, JsonObject, extension_url, ocds_datetime

__all__ = [
    "EmptyPackage",
    "PackageInfo",
    "compiled_release",
    "export_package_info",
    "record_package",
    "release_package",
    "write_record_package",
    "write_release_package",
]


class EmptyPackage(InvalidInput):
    """An OCDS package needs at least one release (``releases`` has ``minItems`` 1)."""


@dataclass(frozen=True)
class PackageInfo:
    """What heads a package (OCDS 1.1 package metadata), whatever it holds."""

    uri: str
    published_date: datetime
    publisher_name: str
    extension_url: str
    license: str | None = None
    publication_policy: str | None = None

    def __post_init__(self) -> None:
        if self.published_date.utcoffset() is None:
            raise ValueError("published_date must be an aware datetime")

    def head(self) -> JsonObject:
        head: JsonObject = {
            "uri": self.uri,
            "version": OCDS_VERSION,
            "extensions": [self.extension_url],
            "publishedDate": ocds_datetime(self.published_date.isoformat()),
            "publisher": {"name": self.publisher_name},
        }
        if self.license is not None:
            head["license"] = self.license
        if self.publication_policy is not None:
            head["publicationPolicy"] = self.publication_policy
        return head


def export_package_info(*, base_url: str, uri: str, publisher_name: str = "Ancla") -> PackageInfo:
    """The head of an export from the service at ``base_url``, published now."""
    return PackageInfo(
        uri=uri,
        published_date=datetime.now(UTC),
        publisher_name=publisher_name,
        extension_url=extension_url(base_url),
    )


def release_package(releases: Iterable[Mapping[str, Any]], info: PackageInfo) -> JsonObject:
    """An OCDS release package holding ``releases``, in memory (see the writer to stream)."""
    package = info.head()
    package["releases"] = [dict(release) for release in releases]
    if not package["releases"]:
        raise EmptyPackage("no releases to publish: an OCDS release package needs one")
    return package


# Release fields the schema marks omitWhenMerged (1.1.5: id, date, tag) and the
# extension's proof, which belongs to one release.
_OMIT_WHEN_MERGED: Final = ("id", "date", "tag", "ancla")


def compiled_release(releases: Sequence[Mapping[str, Any]]) -> JsonObject:
    """The compiled release of one ocid.

    Ancla publishes one release per ocid (one per recorded order), so the
    compiled release is that release without its per-release fields. Merging
    several releases needs the OCDS merge rules (identifier merges of
    arrays), which nothing here needs yet: that is refused, not guessed.
    """
    if len(releases) != 1:
        raise ValueError(
            f"compiling {len(releases)} releases of one ocid needs the OCDS merge rules;"
            " Ancla publishes one release per ocid"
        )
    (release,) = releases
    compiled: JsonObject = {
        "ocid": release["ocid"],
        "id": f"{release['ocid']}-{release['date']}",
        "date": release["date"],
        "tag": ["compiled"],
    }
    for key, value in release.items():
        if key not in compiled and key not in _OMIT_WHEN_MERGED:
            compiled[key] = copy.deepcopy(value)
    return compiled


def _record(releases: Sequence[Mapping[str, Any]], release_package_uri: str | None) -> JsonObject:
    linked: list[JsonObject] | None = None
    if release_package_uri is not None:
        linked = [
            {"url": f"{release_package_uri}#{r['id']}", "date": r["date"], "tag": list(r["tag"])}
            for r in releases
        ]
    return {
        "ocid": releases[0]["ocid"],
        "releases": linked if linked is not None else [dict(r) for r in releases],
        "compiledRelease": compiled_release(releases),
    }


def _records(
    releases: Iterable[Mapping[str, Any]], release_package_uri: str | None
) -> Iterator[JsonObject]:
    # Releases of one ocid must be consecutive (an export yields each ocid once).
    for _, group in groupby(releases, key=lambda release: release["ocid"]):
        yield _record(list(group), release_package_uri)


def _record_head(info: PackageInfo, release_package_uri: str | None) -> JsonObject:
    package = info.head()
    if release_package_uri is not None:
        package["packages"] = [release_package_uri]
    return package


def record_package(
    releases: Iterable[Mapping[str, Any]],
    info: PackageInfo,
    *,
    release_package_uri: str | None = None,
) -> JsonObject:
    """An OCDS record package: one record per ocid with its ``compiledRelease``.

    Releases are embedded, or linked (``<release_package_uri>#<release id>``)
    when the release package they are published in is given.
    """
    package = _record_head(info, release_package_uri)
    package["records"] = list(_records(releases, release_package_uri))
    if not package["records"]:
        raise EmptyPackage("no releases to publish: an OCDS record package needs one")
    return package


def _write_package(fp: IO[str], head: JsonObject, key: str, items: Iterable[JsonObject]) -> int:
    """Write ``{**head, key: items}`` exactly as ``json.dumps(..., ensure_ascii=False)`` would.

    One item is held at a time. Raises EmptyPackage before writing anything
    when there is no item.
    """
    iterator = iter(items)
    first = next(iterator, None)
    if first is None:
        raise EmptyPackage(f"no releases to publish: an OCDS package needs at least one in {key}")
    opening = json.dumps(head, ensure_ascii=False)
    fp.write(f"{opening[:-1]}, {json.dumps(key)}: [")
    fp.write(json.dumps(first, ensure_ascii=False))
    count = 1
    for item in iterator:
        fp.write(", ")
        fp.write(json.dumps(item, ensure_ascii=False))
        count += 1
    fp.write("]}")
    return count


def write_release_package(
    fp: IO[str], releases: Iterable[Mapping[str, Any]], info: PackageInfo
) -> int:
    """Stream a release package to ``fp`` (text, UTF-8); returns the number of releases.

    The bytes equal ``json.dumps(release_package(...), ensure_ascii=False)``.
    """
    return _write_package(fp, info.head(), "releases", (dict(r) for r in releases))


def write_record_package(
    fp: IO[str],
    releases: Iterable[Mapping[str, Any]],
    info: PackageInfo,
    *,
    release_package_uri: str | None = None,
) -> int:
    """Stream a record package to ``fp`` (text, UTF-8); returns the number of records."""
    head = _record_head(info, release_package_uri)
    return _write_package(fp, head, "records", _records(releases, release_package_uri))
