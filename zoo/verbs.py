"""A command-line verb declared once: its options, its parser, its `zoo VERB --help`, its line in `zoo --help`.

A `Verb` names its positional arguments, its `key=value` options (`Option`: a name, a type such as `int`,
`Annotated[int, Range(1)]` or a converter like `names`, a help text, a default, a metavar), its flags, and
whether it also takes free OVERRIDES (Hydra's, or an explainer's PARAM=VALUE). From it come the parser
(`Verb.parse`: one-line ZooErrors with close matches, declared ranges checked by zoo.params), the verb's help
and its entry in the top-level usage. `dataclass_options` turns a dataclass's fields (zoo's ExportConfig, the
runtime's RuntimeOptions) into options, so a setting is declared once, where it lives.

The one-line failure edge of every command is here too (`answer`): `zoo` (zoo.cli) and the runtime-only
wheel's `zoo-predict` (zoo.runtime.predict) answer failures the same way. This module is in zoo's base
layer: it imports only zoo.errors and zoo.params, no torch.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import sys
import textwrap
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from zoo.errors import ZooError, describe_os_error, forget_created, remove_created, unknown
from zoo.params import Range, param

HELP_FLAGS = ("-h", "--help")
WIDTH = 118  # help lines wrap here


def names(value: str) -> list[str]:
    """A list of names on the command line: `embedding,cam` or Hydra's `[embedding,cam]`."""
    return [v.strip() for v in value.strip().removeprefix("[").removesuffix("]").split(",") if v.strip()]


METAVARS = {int: "N", float: "X", bool: "BOOL", names: "NAME[,NAME...]"}


def _metavar_of(kind: Any) -> str:
    """How a value of this type is written in a verb's help: N, X, BOOL, a|b|c, NAME[,NAME...]."""
    if typing.get_origin(kind) is Annotated:
        return _metavar_of(typing.get_args(kind)[0])
    if typing.get_origin(kind) is Literal:
        return "|".join(str(c) for c in typing.get_args(kind))
    return METAVARS.get(kind, "VALUE")


@dataclass(frozen=True)
class Option:
    """One `key=value` option of a verb. `type` converts the text (str, int, float, `names`, any callable) and,
    as `Annotated[int, Range(...)]`, is checked as a plugin parameter is (in range, int64, finite)."""

    name: str
    type: Any = str
    help: str = ""
    default: Any = None  # shown in the help when not None
    metavar: str = ""  # how the value is written in the help; from the type when empty
    required: bool = False  # shown without brackets (the verb's own code says what is missing)
    aliases: tuple[str, ...] = ()  # other keys for the same option (`provider=` is `providers=`)

    @property
    def form(self) -> str:
        """`name=METAVAR`."""
        return f"{self.name}={self.metavar or _metavar_of(self.type)}"

    def convert(self, key: str, value: str, command: str) -> Any:
        """The text of `key=value` as this option's value, or a one-line ZooError: a declared type (int, float,
        bool, `Annotated[int, Range(1)]`, a `Literal`, a list of them) is checked as a plugin parameter is, any
        other type is a converter called on the text."""
        kind = self.type
        if kind is str or not (kind in (int, float, bool) or typing.get_origin(kind) in (Annotated, Literal, list)):
            try:
                return kind(value)
            except ValueError:
                raise ZooError(f"zoo {command}: {key}={value!r} is not a valid {kind.__name__}") from None
        p = param(key, kind, where=f"zoo {command}")
        items = [_from_text(p.base, v, key, command) for v in (names(value) if p.is_list else [value])]
        return p.check(items if p.is_list else items[0], key)


def _from_text(base: type, text: str, key: str, command: str) -> Any:
    """One value's text as `base`: `true`/`false` for a bool (not Python's truth of a text), else base(text)."""
    if base is bool:
        if text.strip().lower() in ("true", "false"):
            return text.strip().lower() == "true"
        raise ZooError(f"zoo {command}: {key}={text!r} is not true or false")
    try:
        return base(text)
    except ValueError:
        raise ZooError(f"zoo {command}: {key}={text!r} is not a valid {base.__name__}") from None


@dataclass(frozen=True)
class Verb:
    """A zoo command: what `zoo NAME ...` takes and what its help says. `options` may be a function returning
    them, read when the verb parses or shows its help (options read from a module `zoo --help` need not load)."""

    name: str  # `export`; a part of a verb is named in full: `bench inference`
    summary: str
    positionals: tuple[tuple[str, str], ...] = ()  # (METAVAR, help): `("EXPORT_DIR", "a folder zoo export wrote")`
    options: tuple[Option, ...] | Callable[[], tuple[Option, ...]] = ()
    flags: tuple[tuple[str, str], ...] = ()  # (`--errors`, help)
    overrides: str = ""  # what its free arguments are (`OVERRIDES...`: Hydra's); empty: it takes none
    examples: tuple[str, ...] = ()
    key_prefix: str = ""  # a prefix its keys may carry: `export.opset=18` is `opset=18`
    parts: tuple[Verb, ...] = ()  # what the first argument picks: `zoo bench inference|discovery|...`
    own_help: bool = True  # False: the verb answers --help itself (zoo train: Hydra's help)
    usage_hint: str = ""  # the usage line's arguments when the verb's own help is elsewhere (Hydra's flags)

    def all_options(self) -> tuple[Option, ...]:
        """The options, read now if they come from a function."""
        return tuple(self.options() if callable(self.options) else self.options)

    def option_keys(self) -> list[str]:
        """Every key the parser accepts, in the order of the options (aliases after their option)."""
        return [k for o in self.all_options() for k in (o.name, *o.aliases)]

    def value(self, parsed: dict[str, Any], name: str) -> Any:
        """Option `name`'s value in `parse`'s result, else its declared default (the one its help shows)."""
        if name in parsed:
            return parsed[name]
        return next(o.default for o in self.all_options() if o.name == name)

    def own(self, args: list[str]) -> tuple[list[str], list[str]]:
        """A verb with free arguments: (its own `key=value` arguments, the others), in order."""
        keys = set(self.option_keys())
        mine = [a for a in args if a.split("=")[0] in keys]
        return mine, [a for a in args if a not in mine]

    def parse(self, args: list[str]) -> dict[str, Any]:
        """`key=value` arguments as a dict of converted values; an unknown key (with close matches), a missing
        `=` or a bad value is a one-line ZooError."""
        options = {k: o for o in self.all_options() for k in (o.name, *o.aliases)}
        out = {}
        for a in args:
            key, sep, value = a.partition("=")
            key = key.removeprefix(self.key_prefix) if self.key_prefix else key
            if not sep:
                raise ZooError(f"zoo {self.name}: expected key=value, got {a!r}; keys: {', '.join(options)}")
            if key not in options:
                raise unknown(f"argument for zoo {self.name}", key, options)
            out[key] = options[key].convert(self.key_prefix + key, value, self.name)  # named as the config names it
        for o in self.all_options():
            for alias in o.aliases:
                if alias in out:
                    out[o.name] = out.pop(alias)
        return out

    def usage(self) -> str:
        """`zoo NAME ARGS...`: positionals, options (optional ones in brackets), flags, overrides."""
        if self.parts:
            return f"zoo {self.name} {'|'.join(p.name.rpartition(' ')[2] for p in self.parts)} ..."
        words = [f"zoo {self.name}"] + ([self.usage_hint] if self.usage_hint else [])
        words += [m for m, _ in self.positionals]
        words += [o.form if o.required else f"[{o.form}]" for o in self.all_options()]
        words += [f"[{f}]" for f, _ in self.flags] + ([f"[{self.overrides.split(':')[0]}]"] if self.overrides else [])
        return " ".join(words)

    def help(self) -> str:
        """What `zoo NAME --help` prints."""
        if self.parts:
            head = f"usage: {self.usage()}\n\n{self.summary}\n"
            return head + "".join("\n" + _indent(p.help(), "  ") for p in self.parts)
        lines = [_wrap(f"usage: {self.usage()}", "    "), "", _wrap(self.summary, ""), ""]
        rows = [(m, h) for m, h in self.positionals]
        rows += [(o.form, _option_help(o)) for o in self.all_options()]
        rows += list(self.flags)
        if self.overrides:
            form, _, what = self.overrides.partition(":")
            rows.append((form, what.strip()))
        if rows:
            lines.append("arguments:")
            width = min(34, max(len(r[0]) for r in rows) + 2)
            pad = " " * (width + 2)
            for form, text in rows:
                if len(form) < width:
                    lines.append(_wrap(f"  {form:<{width}}{text}", pad))
                else:  # a long form: its text on the next line
                    lines += [f"  {form}", _wrap(pad + text, pad)]
        if self.examples:
            lines += ["", "examples:"] + [f"  {e}" for e in self.examples]
        return "\n".join(lines).rstrip() + "\n"

    def help_for(self, args: list[str]) -> str:
        """The help `args` ask for: a part's (`zoo bench inference --help`), else the verb's."""
        part = {p.name: p for p in self.parts}.get(f"{self.name} {args[0]}" if args else "")
        return (part or self).help()

    def wants_help(self, args: list[str]) -> bool:
        """Whether the command line asks for this verb's help (`-h` or `--help` anywhere)."""
        return self.own_help and any(a in HELP_FLAGS for a in args)


def _option_help(o: Option) -> str:
    default = str(o.default).lower() if isinstance(o.default, bool) else o.default
    text = o.help + (f" (default: {default})" if default not in (None, "", []) else "")
    if o.aliases:
        text += f"; also {', '.join(a + '=' for a in o.aliases)}"
    return text.strip()


def _wrap(text: str, indent: str) -> str:
    first, _, rest = text.partition("\n")
    out = textwrap.fill(first, WIDTH, subsequent_indent=indent, break_on_hyphens=False, break_long_words=False)
    return out + ("\n" + rest if rest else "")


def _indent(text: str, prefix: str) -> str:
    return "".join(prefix + line if line.strip() else line for line in text.splitlines(keepends=True))


def top_usage(verbs: Iterable[Verb], example: str) -> str:
    """What `zoo` and `zoo --help` print: each verb's usage and summary."""
    lines = ["usage: zoo COMMAND [ARGS]", "", "commands:"]
    for verb in verbs:
        for v in verb.parts or (verb,):
            lines.append(_wrap(f"  {v.usage().removeprefix('zoo ')}", "        "))
            lines.append(_wrap(f"{' ' * 6}{v.summary}", " " * 6))
    lines += ["", "zoo COMMAND --help: a command's arguments, each explained", "", f"example: {example}"]
    return "\n".join(lines) + "\n"


# ---- options from a dataclass's fields -----------------------------------------------------------


def field_help(cls: type) -> dict[str, str]:
    """Each field's help: `field(metadata={"help": ...})`, else the comment on the field's line in its class's
    source (a base class's for an inherited field), else the comment lines just above it."""
    comments: dict[str, str] = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):
        comments.update(_source_comments(klass))
    return {f.name: f.metadata.get("help") or comments.get(f.name, "") for f in dataclasses.fields(cls)}


def _source_comments(cls: type) -> dict[str, str]:
    """`name: type = default  # comment` (or `# comment` lines above it) in a class's own source."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):  # no source (a frozen app): metadata only
        return {}
    comments, above = {}, []
    for line in source.splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# ").strip())
            continue
        field_line = re.match(r"\s+(\w+)\s*:[^#]*?(?:#\s*(.*))?$", line)
        if field_line and not stripped.startswith(("def ", '"""')):
            comments[field_line.group(1)] = (field_line.group(2) or " ".join(above)).strip()
        above = []
    return comments


def _field_metavar(f: dataclasses.Field, kind: Any, choices: dict[str, Iterable]) -> str:
    if f.metadata.get("metavar"):
        return f.metadata["metavar"]
    declared = [c for c in f.metadata.get("zoo", ()) if typing.get_origin(c) is Literal]
    listed = choices.get(f.name) or (typing.get_args(declared[0]) if declared else ())
    if listed:
        text = "|".join(str(c) for c in listed)
        return f"[{text.replace('|', ',')}]" if typing.get_origin(kind) is list else text
    if typing.get_origin(kind) is list:
        return METAVARS[names]
    return "TEXT" if kind is str else _metavar_of(kind)


def _declared_type(kind: Any, declared: tuple) -> Any:
    """A field's type with what `zoo.train.schemas.declared` adds (its Range, Literal or NonEmpty), so the option
    is checked as the config's field is: `opset=99` is the declared range's line, before any work."""
    literal = [c for c in declared if typing.get_origin(c) is Literal]
    marks = tuple(c for c in declared if typing.get_origin(c) is not Literal)
    is_list = typing.get_origin(kind) is list
    item = literal[0] if literal else typing.get_args(kind)[0] if is_list else kind
    item = Annotated[(item, *marks)] if marks else item
    return list[item] if is_list else item  # type: ignore[valid-type]


def dataclass_options(
    cls: type, as_text: bool = False, choices: dict[str, Iterable] | None = None
) -> tuple[Option, ...]:
    """One Option per field of dataclass `cls`: its name, its type (a list is `names`; `as_text`: every value
    stays text, for a consumer that checks it itself), its default, its help (`field_help`) and a metavar from
    `field(metadata={"metavar": ...})`, the field's declared Literal, `choices[name]` or its type."""
    hints = typing.get_type_hints(cls)
    out = []
    for f, text in zip(dataclasses.fields(cls), field_help(cls).values()):
        kind = hints[f.name]
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
        convert = str if as_text else _declared_type(kind, f.metadata.get("zoo", ()))
        bounds = [c.short() for c in f.metadata.get("zoo", ()) if isinstance(c, Range)]
        text = f"{text} ({', '.join(bounds)})".strip() if bounds else text
        out.append(Option(f.name, convert, text, default, _field_metavar(f, kind, choices or {})))
    return tuple(out)


# ---- the failure edge: one line, exit 2 for bad input, 3 for a bug ----------------------------------

INTERNAL_ERROR = 3  # exit code of a failure that is zoo's (or a plugin's) fault, not the input's (2)


def answer(command: str, run: Callable[[list[str]], int], args: list[str]) -> int:
    """Run one command with the failure edge: a ZooError or a refused path is one line and exit 2, a bug one
    line and exit 3, and the folders the command created go; Ctrl-C is `zoo: interrupted` and 130."""
    forget_created()
    try:
        code = run(args) or 0
    except ZooError as e:
        return report_failure(f"zoo: error: {e}", e, 2)
    except BrokenPipeError:  # whoever read the output went away (zoo list | head): nothing to say, as cat and ls
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # and nothing more to flush at exit
        return 141  # 128 + SIGPIPE, what the shell reports for a tool the pipe stopped
    except OSError as e:  # a path the system refuses: too long, not permitted, a folder where a file belongs
        return report_failure(f"zoo: error: {describe_os_error(e, args)}", e, 2)
    except KeyboardInterrupt:
        print("zoo: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug (zoo's or a library's): still one line, and nothing half-written stays
        return report_failure(internal_error_line(command, e), e, INTERNAL_ERROR)
    forget_created()
    return code


def run_verb(verb: Verb, run: Callable[[list[str]], int], args: list[str]) -> int:
    """A verb's command line: its help when asked (exit 0), else `run(args)` through the failure edge."""
    if verb.wants_help(args):
        print(verb.help_for(args), end="")
        return 0
    return answer(verb.name, run, args)


def internal_error_line(command: str, e: BaseException) -> str:
    """The one line of a failure that is a bug, not bad input: the exception's type and first line."""
    first = (str(e).strip().splitlines() or [""])[0][:300]
    what = f"{type(e).__name__}: {first}" if first else type(e).__name__
    return f"zoo: internal error in zoo {command}: {what}; ZOO_DEBUG=1 shows the traceback"


def report_failure(line: str, e: BaseException, code: int) -> int:
    """A failed command: remove the folders it created (now empty), print one line (and, with ZOO_DEBUG=1, the
    traceback with its causes first); return the exit code."""
    remove_created()
    if os.environ.get("ZOO_DEBUG", "").lower() in ("1", "true", "yes"):
        import traceback

        traceback.print_exception(e)  # a plugin's own exception is its cause
    print(one_line(line), file=sys.stderr)
    return code


# characters that end a line for str.splitlines (and terminals), which a message may hold inside a file name
LINE_BREAKS = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def one_line(text: str) -> str:
    """A message as one line: its own line breaks become spaces, those inside names (a file called 'a\x85b')
    are escaped."""
    text = re.sub(r"\s*\n\s*", " ", text.strip())
    return LINE_BREAKS.sub(lambda m: ascii(m.group())[1:-1], text)
