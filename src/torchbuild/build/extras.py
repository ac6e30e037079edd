"""``--extra`` sources: each SPEC resolved to a pinned source, then brought into the work dir.

A PyPI requirement is answered by the index's project page: JSON (PEP 691) or, from an index that
serves only HTML (PEP 503: a plain web server, a ``file://`` directory as pip takes for
``PIP_INDEX_URL``), its links with their ``#sha256=`` fragments. The newest non-yanked sdist that
matches wins, with the sha256 the index lists. The download is checked against that hash (and
against a replayed manifest's), kept in ``<cache>/sdists/`` and unpacked with tarfile's ``data``
filter (no absolute paths, no links out of the tree). The index answer is cached too, so
``--offline`` and ``fetch`` work like they do for git. ``git+URL@TAG`` goes through the git mirror
cache (``sources.py``) like torch itself; a local directory is copied (its own build/ dirs left
out), so the user's tree is never written to.

Each unpacked or copied tree gets ``.torchbuild-source``: its content pin, which the resume stamps
read in place of a git commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tarfile
import zipfile
from collections.abc import Mapping, Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

import requests
from packaging.specifiers import SpecifierSet
from packaging.utils import InvalidSdistFilename, canonicalize_name, parse_sdist_filename
from packaging.version import InvalidVersion, Version

from torchbuild.build import pipconfig
from torchbuild.build.sources import OFFLINE_FIX, Checkout
from torchbuild.digest import sha256_file
from torchbuild.errors import IntegrityError, OfflineError, SourceError, UsageError
from torchbuild.knowledge.extensions import ExtensionBook, ExtraRequest, ResolvedExtra, parse_extra
from torchbuild.logger import log
from torchbuild.plan import SourceSpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib

# JSON first, PEP 503 HTML from indexes without it (q-values as pip sends them).
_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "\
    "text/html;q=0.01"
PIN_FILE = ".torchbuild-source"
# Build outputs of an earlier in-place build, and VCS data: not part of the source.
_IGNORED_DIRS = {".git", "build", "dist", "__pycache__"}


def _ignored(name: str) -> bool:
    return (name in _IGNORED_DIRS or name == PIN_FILE or name.endswith((".egg-info", ".so")))


def _copy_ignore(_dir: str, names: list[str]) -> set[str]:
    return {n for n in names if _ignored(n)}


def sdist_cache(cache_dir: Path) -> Path:
    return cache_dir / "sdists"


def index_base(environ: Mapping[str, str]) -> str:
    """The index pip would use: PIP_INDEX_URL, pip.conf's index-url (a mirror), else PyPI."""
    return pipconfig.index_url(environ)


# --------------------------------------------------------------------------------------------
# Resolving a PyPI requirement


def choose_sdist(doc: Mapping[str, Any], name: str, specifier: str) -> tuple[str, dict[str, Any]]:
    """(version, file entry) of the newest non-yanked sdist that matches ``specifier``."""
    spec = SpecifierSet(specifier)
    found: dict[Version, dict[str, Any]] = {}
    for entry in doc.get("files", []):
        try:
            _, version = parse_sdist_filename(str(entry.get("filename", "")))
        except (InvalidSdistFilename, InvalidVersion):
            continue
        if entry.get("yanked") or "sha256" not in (entry.get("hashes") or {}):
            continue
        if spec.contains(version, prereleases=bool(specifier) and version.is_prerelease):
            found.setdefault(version, dict(entry))
    if not found:
        have = sorted({str(v) for v in _sdist_versions(doc)}, key=Version)[-8:]
        msg = (f"--extra {name}{specifier}: no source distribution on the index matches "
               f"(versions with an sdist: {', '.join(have) or 'none'})")
        raise UsageError(msg, fix=f"use --extra {name}=={have[-1]}" if have else
                         "build it from git+URL@TAG or a local directory instead")
    best = max(found)
    return str(best), found[best]


def _sdist_versions(doc: Mapping[str, Any]) -> list[Version]:
    out = []
    for entry in doc.get("files", []):
        try:
            out.append(parse_sdist_filename(str(entry.get("filename", "")))[1])
        except (InvalidSdistFilename, InvalidVersion):
            continue
    return out


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class _Links(HTMLParser):
    """The ``<a href>`` links of a PEP 503 project page, with their ``data-yanked``."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, bool]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "a" and found.get("href"):
            self.links.append((str(found["href"]), "data-yanked" in found))


def simple_html_doc(page: str, page_url: str) -> dict[str, Any]:
    """A PEP 503 HTML page in the PEP 691 JSON shape: file name, absolute URL, hashes, yanked.
    The hash is the link's ``#sha256=`` fragment; a link without one has no hash (and is skipped
    by ``choose_sdist``: nothing unchecked is built)."""
    parser = _Links()
    parser.feed(page)
    files = []
    for href, yanked in parser.links:
        url, fragment = urldefrag(urljoin(page_url, href))
        algo, _, digest = fragment.partition("=")
        files.append({"filename": unquote(urlsplit(url).path.rsplit("/", 1)[-1]), "url": url,
                      "hashes": {algo: digest} if algo == "sha256" and digest else {},
                      "yanked": yanked})
    return {"files": files}


def local_file(url: str) -> Path | None:
    """The path of a ``file://`` URL (None for other schemes)."""
    parts = urlsplit(url)
    return Path(unquote(parts.path)) if parts.scheme == "file" else None


def _fetch_page(url: str, name: str, base: str) -> dict[str, Any]:
    """The project page at ``url`` as a PEP 691 document (HTML pages converted)."""
    folder = local_file(url)
    if folder is not None:   # pip's reading of a file:// index: the directory's index.html
        page = folder / "index.html"
        if not page.is_file():
            msg = f"--extra {name}: there is no project {name!r} on {base} (no {page})"
            raise UsageError(msg, fix="check the name, or the file:// index's layout "
                             "(ROOT/NAME/index.html, PEP 503)")
        return simple_html_doc(page.read_text(encoding="utf-8"), url)
    try:
        response = requests.get(url, headers={"Accept": _ACCEPT}, timeout=60)
    except requests.RequestException as exc:
        msg = f"cannot reach the package index for --extra {name} ({url}): {exc}"
        raise SourceError(msg, fix="check the network, or PIP_INDEX_URL / pip.conf's index-url; "
                          "or fill the cache with `python -m torchbuild fetch` elsewhere and use "
                          "--offline") from None
    if response.status_code == 404:
        msg = f"--extra {name}: there is no project {name!r} on {base}"
        raise UsageError(msg, fix="check the name on https://pypi.org, or give git+URL@TAG")
    kind = response.headers.get("content-type", "")
    if response.status_code == 200 and "json" in kind:
        return dict(response.json())
    if response.status_code == 200 and "html" in kind:
        return simple_html_doc(response.text, response.url or url)
    msg = f"{url} answered {response.status_code} ({kind or 'no content type'}), not a simple " \
        "index page (PEP 691 JSON or PEP 503 HTML)"
    raise SourceError(msg, fix="point PIP_INDEX_URL at a package index's simple/ root")


def index_doc(name: str, cache_dir: Path, environ: Mapping[str, str], *,
              offline: bool) -> dict[str, Any]:
    """The index's project page as JSON; the cached copy when offline."""
    cached = sdist_cache(cache_dir) / "index" / f"{name}.json"
    if offline:
        if not cached.is_file():
            msg = f"--offline: the package index answer for {name} is not in the cache"
            raise OfflineError(msg, fix=OFFLINE_FIX)
        return dict(json.loads(cached.read_text(encoding="utf-8")))
    base = index_base(environ)
    doc = _fetch_page(f"{base}/{name}/", name, base)
    _write_atomic(cached, json.dumps(doc).encode())
    return doc


def _refuse_without_sdist(req: ExtraRequest, book: ExtensionBook) -> None:
    """A package whose releases have no sdist on PyPI (bitsandbytes since 0.43): the newest sdist
    would be years old, so the PyPI form is refused, with the git source that builds."""
    known = book.packages.get(req.name)
    if known is None or not known.no_pypi_sdist:
        return
    repo = known.repos[0] if known.repos else ""
    tag = known.git_tag or "TAG"
    fix = f"build it from git: --extra 'git+https://{repo}@{tag}'" if repo else \
        "build it from git+URL@TAG or a local directory"
    raise UsageError(f"--extra {req.spec!r}: {known.no_pypi_sdist}", fix=fix)


def resolve_pypi(req: ExtraRequest, book: ExtensionBook, cache_dir: Path,
                 environ: Mapping[str, str], *, offline: bool) -> ResolvedExtra:
    _refuse_without_sdist(req, book)
    doc = index_doc(req.name, cache_dir, environ, offline=offline)
    version, entry = choose_sdist(doc, req.name, req.specifier)
    recipe, note = book.recipe_for(req.name, version)
    return ResolvedExtra(req, req.name, version, str(entry["url"]), tag=str(entry["filename"]),
                         sha256=str(entry["hashes"]["sha256"]), recipe=recipe, note=note)


# --------------------------------------------------------------------------------------------
# git and local directories


def _tag_version(ref: str) -> str:
    text = ref.rsplit("/", 1)[-1].lstrip("vV")
    try:
        return str(Version(text))
    except InvalidVersion:
        return ""


def resolve_git(req: ExtraRequest, book: ExtensionBook) -> ResolvedExtra:
    version = _tag_version(req.ref)
    recipe, note = book.recipe_for(req.name, version or None)
    return ResolvedExtra(req, req.name, version, req.url, tag=req.ref, recipe=recipe, note=note)


def _project_table(path: Path) -> Mapping[str, Any]:
    try:
        data = tomllib.loads((path / "pyproject.toml").read_text(encoding="utf-8"))
    except (FileNotFoundError, tomllib.TOMLDecodeError):
        return {}
    project = data.get("project")
    return project if isinstance(project, dict) else {}


def resolve_path(req: ExtraRequest, book: ExtensionBook, environ: Mapping[str, str]
                 ) -> ResolvedExtra:
    home = environ.get("HOME", "~")
    path = Path(req.url.replace("~", home, 1) if req.url.startswith("~") else req.url).resolve()
    if not (path / "setup.py").is_file() and not (path / "pyproject.toml").is_file():
        msg = f"--extra {req.spec!r}: {path} has no setup.py or pyproject.toml"
        raise UsageError(msg, fix="point --extra at the directory that holds the package's "
                         "setup.py")
    project = _project_table(path)
    name = canonicalize_name(str(project.get("name") or "")) or \
        book.name_for_repo(path.name) or canonicalize_name(path.name)
    dynamic = "version" in project.get("dynamic", [])
    version = "" if dynamic else str(project.get("version") or "")
    recipe, note = book.recipe_for(name, version or None)
    return ResolvedExtra(ExtraRequest(req.spec, "path", name, url=str(path)), name, version,
                         str(path), recipe=recipe, note=note)


def resolve_all(specs: Sequence[str], book: ExtensionBook, cache_dir: Path,
                environ: Mapping[str, str], *, offline: bool,
                reserved: Sequence[str] = ()) -> tuple[ResolvedExtra, ...]:
    """Every ``--extra`` pinned: the index (or its cached answer) for PyPI requirements."""
    out: list[ResolvedExtra] = []
    for spec in specs:
        req = parse_extra(spec, book)
        if req.kind == "pypi":
            extra = resolve_pypi(req, book, cache_dir, environ, offline=offline)
        elif req.kind == "git":
            extra = resolve_git(req, book)
        else:
            extra = resolve_path(req, book, environ)
        clash = extra.name in reserved or extra.name in {e.name for e in out}
        if clash:
            msg = f"--extra {spec!r}: {extra.name} is already part of this build"
            raise UsageError(msg, fix=f"give {extra.name} once (companions via --vision/--audio)")
        out.append(extra)
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Bringing the sources into the work dir




def download_sdist(src: SourceSpec, cache_dir: Path, *, offline: bool) -> Path:
    """The sdist in the cache, downloaded once and checked against the index's sha256."""
    if src.commit and src.commit != f"sha256:{src.sha256}":
        msg = (f"{src.name}: the recorded build used {src.commit}, the index now lists "
               f"sha256:{src.sha256} for {src.tag}")
        raise IntegrityError(msg, fix=f"pin the version the manifest names (--extra "
                             f"{src.name}==VERSION), or rebuild without the manifest pin")
    path = sdist_cache(cache_dir) / "files" / src.tag
    if path.is_file() and sha256_file(path) == src.sha256:
        return path
    if offline:
        msg = f"--offline: {src.tag} is not in the sdist cache {path.parent}"
        raise OfflineError(msg, fix=OFFLINE_FIX)
    log.info(f"downloading {src.tag}")
    content = _download(src.url)
    got = hashlib.sha256(content).hexdigest()
    if got != src.sha256:
        msg = f"{src.tag}: downloaded sha256 {got} is not the index's {src.sha256}"
        raise IntegrityError(msg, fix="retry; if it persists, the index or a proxy serves a "
                             "different file - do not build it")
    _write_atomic(path, content)
    return path


def _download(url: str) -> bytes:
    """The file at ``url``: read in place for a file:// index, else over HTTP(S)."""
    local = local_file(url)
    try:
        if local is not None:
            return local.read_bytes()
        response = requests.get(url, timeout=600)
        response.raise_for_status()
    except (OSError, requests.RequestException) as exc:
        msg = f"download of {url} failed: {exc}"
        raise SourceError(msg, fix="check the network (or the file:// index), then re-run") \
            from None
    return response.content


def _unpack(archive: Path, dest: Path) -> None:
    """Into ``dest`` without the archive's single top-level directory; nothing outside it."""
    tmp = dest.with_name(f".{dest.name}.unpack")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                if member.startswith("/") or ".." in Path(member).parts:
                    msg = f"{archive.name}: member {member!r} points outside the tree"
                    raise IntegrityError(msg, fix="do not build this archive")
            zf.extractall(tmp)
    else:
        with tarfile.open(archive) as tf:
            tf.extractall(tmp, filter="data")
    entries = list(tmp.iterdir())
    top = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
    shutil.rmtree(dest, ignore_errors=True)
    top.replace(dest)
    shutil.rmtree(tmp, ignore_errors=True)


def _pinned(dest: Path, pin: str) -> bool:
    marker = dest / PIN_FILE
    return marker.is_file() and marker.read_text(encoding="utf-8").strip() == pin


def prepare_sdist(src: SourceSpec, cache_dir: Path, *, offline: bool) -> Checkout:
    """Unpack once; a re-run with the same sdist keeps the tree (and its build/ for resume)."""
    pin = f"sha256:{src.sha256}"
    if not _pinned(src.path, pin):
        archive = download_sdist(src, cache_dir, offline=offline)
        _unpack(archive, src.path)
        (src.path / PIN_FILE).write_text(pin + "\n", encoding="utf-8")
    return Checkout(src.name, src.path, src.tag, pin, src.url)


def tree_digest(root: Path) -> str:
    """Paths, sizes and mtimes of a local tree (minus build outputs): changes when it is edited."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not _ignored(d))
        for name in sorted(f for f in filenames if not _ignored(f)):
            path = Path(dirpath) / name
            st = path.lstat()
            h.update(f"{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return f"tree:{h.hexdigest()}"


def prepare_path(src: SourceSpec) -> Checkout:
    """Copy the user's directory over the work copy (mtimes kept, so ninja rebuilds only edits)."""
    origin = Path(src.url)
    pin = tree_digest(origin)
    src.path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(origin, src.path, symlinks=True, ignore=_copy_ignore, dirs_exist_ok=True)
    (src.path / PIN_FILE).write_text(pin + "\n", encoding="utf-8")
    return Checkout(src.name, src.path, "", pin, src.url)


def prepare_all(specs: Sequence[SourceSpec], cache_dir: Path, *,
                offline: bool) -> dict[str, Checkout]:
    """The non-git extras' trees (git ones go through ``sources.checkout_all``)."""
    out = {}
    for src in specs:
        if src.kind == "sdist":
            out[src.name] = prepare_sdist(src, cache_dir, offline=offline)
        elif src.kind == "path":
            out[src.name] = prepare_path(src)
    return out


def source_pin(cwd: Path) -> str:
    """The content pin of an extra's tree, for the resume stamps ("" when it has none)."""
    marker = cwd / PIN_FILE
    return marker.read_text(encoding="utf-8").strip() if marker.is_file() else ""
