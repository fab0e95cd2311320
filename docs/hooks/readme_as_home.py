"""mkdocs hook: the site's home page is README.md itself, so the front page has one source.

README.md sits at the repository root and links into docs/ (`docs/training.md`, `docs/images/x.png`), so
its links resolve on disk and on GitHub. The site's pages are docs/'s files, so from the home page the same
targets are those links without `docs/`. This hook adds README.md to the site as `index.md` with exactly
that prefix taken off its relative links and images; nothing else changes. A README link to anything
outside docs/ (the code, say) then names a file the site does not have, and `mkdocs build --strict` fails
on it, as it does on a missing page or anchor.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

# a markdown link or image target `](docs/...`, a reference definition `]: docs/...`, an HTML `src="docs/...`
_INTO_DOCS = re.compile(r"(\]\(|^\[[^\]]+\]:[ \t]*|src=\")docs/", re.M)


def readme_for_site(text: str) -> str:
    """README.md's text as the home page sees it: its links into docs/ made relative to docs/."""
    return _INTO_DOCS.sub(r"\1", text)


def on_files(files, config):
    if files.get_file_from_path("index.md") is not None:
        raise PluginError("docs/index.md must not exist: the home page is README.md (docs/hooks/readme_as_home.py)")
    readme = Path(config.config_file_path).parent / "README.md"
    files.append(File.generated(config, "index.md", content=readme_for_site(readme.read_text(encoding="utf-8"))))
    return files
