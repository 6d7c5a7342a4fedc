"""Copy the public pages' JavaScript dependencies from node_modules into the package.

    .venv/bin/python scripts/vendor_web.py            # after `npm ci`: copy, write the notes
    .venv/bin/python scripts/vendor_web.py --check    # exit 1 if the committed copies differ

The pages' scripts are served by Ancla itself (no third-party host: the pages
work on a closed government network), from app/web/static/vendor/. What is
copied is exactly one file of each npm package, at the version package.json
pins exactly (and package-lock.json installs), with its licence beside it and
the list in vendor/README.md. The file names carry the versions, and
app/web/static/verify.js imports them by those names: bumping a package means
running this script and changing that import.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "app" / "web" / "static" / "vendor"


@dataclass(frozen=True)
class Vendored:
    package: str
    source: str  # inside node_modules/<package>/
    licence_file: str
    licence: str
    why: str

    @property
    def version(self) -> str:
        pinned = json.loads((ROOT / "package.json").read_text("utf-8"))["devDependencies"]
        version = str(pinned[self.package])
        if not version[:1].isdigit():
            raise SystemExit(f"package.json must pin {self.package} exactly, not {version!r}")
        return version

    @property
    def name(self) -> str:
        stem, _, suffix = Path(self.source).name.partition(".")
        return f"{self.package}-{self.version}.{suffix}"

    @property
    def licence_name(self) -> str:
        return f"{self.package}-{self.version}.{self.licence_file}"


PACKAGES = (
    Vendored(
        "ethers",
        "dist/ethers.min.js",
        "LICENSE.md",
        "MIT",
        "keccak256, SHA-256, EIP-55 addresses (the ES module build, one file)",
    ),
    Vendored("canonicalize", "lib/canonicalize.js", "LICENSE", "Apache-2.0", "RFC 8785 (JCS)"),
)


def expected() -> dict[str, bytes]:
    """Every file of vendor/ as this script writes it."""
    files: dict[str, bytes] = {}
    lines = [
        "# Vendored JavaScript",
        "",
        "Copied from `node_modules` by `scripts/vendor_web.py` (do not edit; run it again",
        "after changing a pinned version in package.json). Served by Ancla itself at",
        "`/static/vendor/`.",
        "",
        "| file | npm package | version | licence | used for | sha256 |",
        "|---|---|---|---|---|---|",
    ]
    for item in PACKAGES:
        installed = ROOT / "node_modules" / item.package
        meta = json.loads((installed / "package.json").read_text("utf-8"))
        if meta["version"] != item.version:
            raise SystemExit(
                f"node_modules has {item.package} {meta['version']}, package.json pins "
                f"{item.version}: run `npm ci`"
            )
        body = (installed / item.source).read_bytes()
        files[item.name] = body
        files[item.licence_name] = (installed / item.licence_file).read_bytes()
        digest = hashlib.sha256(body).hexdigest()
        lines.append(
            f"| `{item.name}` | `{item.package}` (`{item.source}`) | {item.version} | "
            f"{item.licence} (`{item.licence_name}`) | {item.why} | `{digest}` |"
        )
    files["README.md"] = ("\n".join(lines) + "\n").encode()
    return files


def differences() -> list[str]:
    wanted = expected()
    found = {p.name for p in VENDOR.iterdir()} if VENDOR.is_dir() else set()
    problems = [
        f"{name} is missing or differs"
        for name, body in wanted.items()
        if not (VENDOR / name).is_file() or (VENDOR / name).read_bytes() != body
    ]
    problems += [f"{name} is not one of the vendored files" for name in sorted(found - set(wanted))]
    module = (ROOT / "app" / "web" / "static" / "verify.js").read_text("utf-8")
    problems += [
        f"verify.js does not import ./vendor/{item.name}"
        for item in PACKAGES
        if f'"./vendor/{item.name}"' not in module
    ]
    return problems


def main(argv: list[str]) -> int:
    if argv[1:] == ["--check"]:
        problems = differences()
        for problem in problems:
            print(f"app/web/static/vendor/{problem}", file=sys.stderr)
        return 1 if problems else 0
    VENDOR.mkdir(parents=True, exist_ok=True)
    wanted = expected()
    for stale in VENDOR.iterdir():
        if stale.name not in wanted:
            stale.unlink()
    for name, body in wanted.items():
        (VENDOR / name).write_bytes(body)
        print(f"wrote app/web/static/vendor/{name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
