"""PEP 503 HTML project pages and file:// indexes, as ``--extra NAME`` resolution reads them."""

from __future__ import annotations

import json

import pytest

from torchbuild.build.extras import choose_sdist, index_doc, simple_html_doc
from torchbuild.errors import UsageError

SHA = "ab" * 32
PAGE = f"""<!DOCTYPE html><html><body>
<a href="../../files/tbext-0.1.0.tar.gz#sha256={SHA}">tbext-0.1.0.tar.gz</a>
<a href="https://files.example.org/tbext-0.2.0.tar.gz#sha256={"cd" * 32}" data-yanked="">x</a>
<a href="tbext-0.3.0.tar.gz#md5=0123">tbext-0.3.0.tar.gz</a>
<a href="tbext-0.1.0-py3-none-any.whl#sha256={"ef" * 32}">wheel</a>
</body></html>"""


def test_html_links_become_the_json_shape_with_absolute_urls_and_hashes():
    doc = simple_html_doc(PAGE, "https://mirror.example.org/simple/tbext/")
    files = {f["filename"]: f for f in doc["files"]}
    assert files["tbext-0.1.0.tar.gz"]["url"] == "https://mirror.example.org/files/tbext-0.1.0.tar.gz"
    assert files["tbext-0.1.0.tar.gz"]["hashes"] == {"sha256": SHA}
    assert files["tbext-0.2.0.tar.gz"]["yanked"] is True
    assert files["tbext-0.3.0.tar.gz"]["hashes"] == {}   # md5 only: not a usable pin


def test_yanked_and_unhashed_sdists_are_never_chosen():
    doc = simple_html_doc(PAGE, "file:///srv/simple/tbext/")
    version, entry = choose_sdist(doc, "tbext", "")
    assert (version, entry["url"]) == ("0.1.0", "file:///srv/files/tbext-0.1.0.tar.gz")


def test_a_file_index_is_read_from_disk_and_cached_for_offline(tmp_path):
    root = tmp_path / "simple"
    (root / "tbext").mkdir(parents=True)
    (root / "tbext" / "index.html").write_text(PAGE)
    env = {"PIP_INDEX_URL": f"file://{root}/"}
    doc = index_doc("tbext", tmp_path / "cache", env, offline=False)
    assert doc["files"][0]["url"] == f"file://{tmp_path}/files/tbext-0.1.0.tar.gz"
    cached = json.loads((tmp_path / "cache" / "sdists" / "index" / "tbext.json").read_text())
    assert cached == doc == index_doc("tbext", tmp_path / "cache", {}, offline=True)


def test_a_project_missing_from_a_file_index_is_a_usage_error(tmp_path):
    (tmp_path / "simple").mkdir()
    with pytest.raises(UsageError, match="no project 'nope'"):
        index_doc("nope", tmp_path / "cache", {"PIP_INDEX_URL": f"file://{tmp_path}/simple"},
                  offline=False)
