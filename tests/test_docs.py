"""The documentation: README.md is the front page (and the site's home page), docs/ holds the rest.

`make docs` (mkdocs build --strict) is the full check; these tests are the fast part of it that needs no
mkdocs: the README's length, every relative link and image of README.md and docs/*.md resolving to a file
(and a `#anchor` to a heading, slugged as mkdocs' toc slugs it), every page in mkdocs.yml's nav, and
the README linking to every page. No torch, no zoo import.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "hooks" not in p.relative_to(DOCS).parts)

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
CODE_SPAN = re.compile(r"(`+).+?\1", re.S)
# [text](target "title") and ![alt](target); text may hold one level of brackets or a nested image
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)
HTML_SRC = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.I)


def prose(text: str) -> str:
    """The text outside fenced code blocks and code spans, where links are links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def links(path: Path) -> list[str]:
    text = prose(path.read_text(encoding="utf-8"))
    return LINK.findall(text) + REF_DEF.findall(text) + HTML_SRC.findall(text)


def is_external(target: str) -> bool:
    return re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) is not None


def headings(path: Path) -> list[str]:
    """ATX headings outside code blocks, as plain text (code spans, links and emphasis reduced to their text)."""
    out = []
    for line in FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"^ {0,3}#{1,6}[ \t]+(.*?)[ \t#]*$", line)
        if m:
            text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1))
            out.append(re.sub(r"[`*]", "", text))
    return out


def mkdocs_slug(text: str) -> str:
    """Python-Markdown's toc slugify, which mkdocs uses for heading ids."""
    value = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    value = re.sub(r"[^\w\s-]", "", value).strip().lower()
    return re.sub(r"[-\s]+", "-", value)


def github_slug(text: str) -> str:
    """GitHub's heading anchors, for the README, which GitHub shows too."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path, slug=mkdocs_slug) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for text in headings(path):
        s = slug(text)
        if s in seen:  # toc makes repeated ids unique: x, x_1, x_2 (GitHub: x-1); neither is linked here
            seen[s] += 1
            s = f"{s}_{seen[s]}"
        else:
            seen[s] = 0
        out.add(s)
    return out


def nav_pages() -> list[str]:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    found: list[str] = []

    def walk(node):
        if isinstance(node, str):
            found.append(node)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)

    walk(config["nav"])
    return [p for p in found if not is_external(p)]


def broken_links(path: Path, base: Path, inside: Path, readme: bool = False) -> list[str]:
    """The relative links of PATH (relative to BASE) that name no file inside INSIDE, or no heading of it."""
    broken = []
    for target in links(path):
        if is_external(target):
            continue
        file_part, _, anchor = target.partition("#")
        target_path = (base / file_part).resolve() if file_part else path
        if not target_path.is_file():
            broken.append(f"{target}: no such file")
            continue
        if not target_path.is_relative_to(inside.resolve()):
            broken.append(f"{target}: outside {inside.relative_to(ROOT) or '.'}, so not on the site")
            continue
        if anchor and target_path.suffix == ".md":
            if anchor not in anchors(target_path):
                broken.append(f"{target}: no heading with the id {anchor!r}")
            elif readme and anchor not in anchors(target_path, github_slug):
                broken.append(f"{target}: GitHub gives that heading another id; link a heading both agree on")
    return broken


def test_readme_is_a_front_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; the rest belongs on a docs/ page"
    text = README.read_text(encoding="utf-8")
    assert "make demo" in text and "make test" in text


def test_every_readme_link_resolves_on_disk_and_on_the_site():
    # the site's home page is README.md with "docs/" taken off its links (docs/hooks/readme_as_home.py), so
    # a README link resolves on both only if it points into docs/
    assert links(README), "README.md links to no page"
    assert not broken_links(README, ROOT, DOCS, readme=True)


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_every_docs_link_resolves(page):
    assert not broken_links(page, page.parent, DOCS)


def test_every_page_is_in_the_nav_and_every_nav_entry_is_a_page():
    nav = nav_pages()
    assert nav[0] == "index.md", "the home page comes first"
    assert not (DOCS / "index.md").exists(), "the home page is README.md (docs/hooks/readme_as_home.py)"
    pages = {str(p.relative_to(DOCS)) for p in PAGES}
    assert pages - set(nav) == set(), "pages missing from mkdocs.yml's nav"
    assert set(nav) - pages == {"index.md"}, "nav entries with no page"
    assert len(nav) == len(set(nav))


def test_the_readme_links_to_every_page():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in links(README) if not is_external(t)}
    missing = [page for page in nav_pages()[1:] if (DOCS / page).resolve() not in linked]
    assert not missing, f"README.md links to none of: {missing}"


def test_the_link_checker_sees_a_broken_link_and_anchor(tmp_path):
    (tmp_path / "a.md").write_text("# A page\n\n## Set-up: two `commands`\n")
    page = tmp_path / "b.md"
    page.write_text(
        "[ok](a.md#set-up-two-commands) ![ok](a.md) `[code](nowhere.md)`\n\n```\n[code](nowhere.md)\n```\n"
        "[gone](missing.md) [bad anchor](a.md#setup) [self](#nothing)\n"
    )
    assert broken_links(page, tmp_path, tmp_path) == [
        "missing.md: no such file",
        "a.md#setup: no heading with the id 'setup'",
        "#nothing: no heading with the id 'nothing'",
    ]
