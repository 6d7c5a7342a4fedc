"""OCDS 1.1 packages: release packages, record packages and compiled releases (DESIGN §4).

A package is a head (:class:`PackageInfo`: uri, publishedDate, publisher, the
extensions it uses) and the releases, or one record per ocid with its
``compiledRelease`` and ``versionedRelease``. OCDS packages hold at least one release, so an export
with nothing to publish raises :class:`EmptyPackage` rather than write an
invalid package.

Writers stream: packages are written one release (or record) at a time from
iterators (:func:`app.opendata.export.export_releases` reads the database with
``yield_per``); nothing holds the whole ledger in memory.

Merging follows the OCDS merge rules through ``ocdsmerge``, the Open
Contracting Partnership's reference implementation, with the rules read from
the OCDS 1.1.5 release schema shipped beside this module
(``release-schema-1.1.5.json``, a byte-for-byte copy of the published one)
with the Ancla extension's patch applied, so merging never fetches a schema.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from itertools import groupby
from pathlib import Path
from typing import IO, Any, Final

from ocdsmerge import Merger

from app.errors import InvalidInput
from app.opendata.mapping import (
    EXTENSION_DIR,
    OCDS_VERSION,
    JsonObject,
    extension_url,
    ocds_datetime,
)

__all__ = [
    "EmptyPackage",
    "PackageInfo",
    "compiled_release",
    "export_package_info",
    "merge_rules",
    "merge_schema",
    "record_package",
    "release_package",
    "versioned_release",
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


# The OCDS 1.1.5 release schema (tests/vectors/ocds/SOURCES.md says where from).
RELEASE_SCHEMA_PATH: Final = Path(__file__).with_name("release-schema-1.1.5.json")


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON Merge Patch: how an OCDS extension's schema applies to the release schema."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def merge_schema() -> JsonObject:
    """The release schema Ancla's releases follow: OCDS 1.1.5 with the Ancla extension."""
    official = json.loads(RELEASE_SCHEMA_PATH.read_text("utf-8"))
    patch = json.loads((EXTENSION_DIR / "release-schema.json").read_text("utf-8"))
    patched: JsonObject = _merge_patch(official, patch)
    return patched


@cache
def _merger() -> Merger:
    # The merge rules (omitWhenMerged, wholeListMerge) read once from the schema.
    return Merger(schema=merge_schema())


def merge_rules() -> dict[tuple[str, ...], str]:
    """The OCDS merge rules of :func:`merge_schema`, as ocdsmerge reads them: field
    path -> ``omitWhenMerged`` or ``wholeListMerge``."""
    return dict(_merger().merge_rules)


def _of_one_ocid(releases: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if not releases:
        raise ValueError("no releases to merge")
    ocids = {release["ocid"] for release in releases}
    if len(ocids) != 1:
        raise ValueError(f"releases of one ocid are merged, not of {len(ocids)}")
    # Copies: the merged release must share no list or object with the releases.
    return [copy.deepcopy(dict(release)) for release in releases]


def compiled_release(releases: Sequence[Mapping[str, Any]]) -> JsonObject:
    """The compiled release of one ocid: its releases merged by the OCDS merge rules.

    ocdsmerge merges them in date order, oldest first (equal dates in the
    order given: an order's history), exactly as OCDS tools compile the
    published releases. It compares dates as text: exact for dates of one UTC
    offset (Peru's -05:00); dates in mixed offsets may merge out of order.
    Fields the schema marks ``omitWhenMerged`` (``id``, ``date``, ``tag``,
    the extension's ``ancla`` proof) are left out; the
    compiled release's id is ``<ocid>-<latest date>`` and its tag
    ``compiled``. Raises ValueError for no releases, or releases of several ocids.
    """
    compiled: JsonObject = _merger().create_compiled_release(_of_one_ocid(releases))
    return compiled


def versioned_release(releases: Sequence[Mapping[str, Any]]) -> JsonObject:
    """The versioned release of one ocid (OCDS merge rules, date order as in
    :func:`compiled_release`): each field's successive values, each with the
    ``releaseID``, ``releaseDate`` and ``releaseTag`` of the release that set it."""
    versioned: JsonObject = _merger().create_versioned_release(_of_one_ocid(releases))
    return versioned


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
        "versionedRelease": versioned_release(releases),
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
    """An OCDS record package: one record per ocid with its ``compiledRelease`` and
    ``versionedRelease``.

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
