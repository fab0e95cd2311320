"""mkdocs hook: a page's `<!-- options: VERB -->` line becomes the table of that verb's options, made from
the verb's declaration (zoo.verbs), so a new option reaches the docs with no edit here.

`<!-- options: predict -->` lists `zoo predict`'s options (which are also `Model(path, **options)`'s);
`<!-- options: runtime -->` only the session options (RuntimeOptions), `<!-- options: export -->` the
export's. Each row: the option as written on the command line, its default, its help.
"""

from __future__ import annotations

import re

from mkdocs.exceptions import PluginError

_MARK = re.compile(r"^<!-- options: ([a-z -]+) -->$", re.M)


def _options(name: str):
    from zoo.cli import VERBS, verb_module
    from zoo.runtime.predict import runtime_options_spec

    if name == "runtime":
        return runtime_options_spec()
    words = name.split()
    if words[0] not in VERBS:
        raise PluginError(f"<!-- options: {name} -->: no such verb; verbs: {', '.join(VERBS)}")
    verb = verb_module(words[0]).VERB
    for part in verb.parts:
        if part.name == name:
            verb = part
    return verb.all_options()


def table(name: str) -> str:
    """The markdown table of a verb's options."""
    rows = ["| option | default | what it does |", "|---|---|---|"]
    for o in _options(name):
        default = (
            ""
            if o.default in (None, "")
            else f"`{str(o.default).lower() if isinstance(o.default, bool) else o.default}`"
        )
        text = o.help.replace("|", "\\|")
        rows.append(f"| `{o.form}` | {default} | {text} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page, config, files) -> str:
    return _MARK.sub(lambda m: table(m.group(1)), markdown)
