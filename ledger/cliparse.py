"""The command line's grammar: the decorators a command is declared with, the ledger options every
command takes, the value types, and usage errors as one line with a suggestion.

A command is a function ``run(args, out, err) -> exit code`` under :meth:`Commands.command` and one
:func:`option` decorator per option or argument, read top to bottom as ``--help`` lists them::

    @commands.command("get", "Show one entry (exit 1 if there is none).", "get colosseum rome-80ad")
    @option("spot", metavar="SPOT", help="spotId")
    @option("--json", action="store_true", help="print the entry as one JSON object")
    def get(args: argparse.Namespace, out: TextIO, err: TextIO) -> int: ...

:meth:`Commands.parser` builds the parser from the commands in the order they were declared.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import re
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TextIO

from ledger.errors import InvalidEntryError
from ledger.layout import DIR_ENV
from ledger.retry import parse_duration
from ledger.stores import STORE_ENV

__all__ = (
    "PROG",
    "BadUsage",
    "Commands",
    "Parser",
    "Run",
    "address",
    "duration",
    "exclusive",
    "fraction",
    "int_at_least",
    "mapping",
    "option",
    "path",
    "seconds",
    "seconds_at_least",
    "span",
    "subparsers",
)

PROG = "video-ledger"
EXIT_USAGE = 2

Run = Callable[[argparse.Namespace, TextIO, TextIO], int]
"""A command's body: the parsed arguments, the output and error streams; returns the exit code."""


class BadUsage(Exception):
    """A usage error found while parsing: ``str(exc)`` is the whole line to print (exit 2)."""


class _ParseError(Exception):
    def __init__(self, parser: Parser, message: str) -> None:
        super().__init__(message)
        self.parser, self.message = parser, message

    def line(self) -> str:
        prog = self.parser.prog
        return f"{prog}: error: {self.message}{_suggestion(self.parser, self.message)} (see {prog} --help)"


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are raised (and said in one line by :func:`Commands.parse`) and
    whose help and version go to the streams ``main`` was given."""

    def __init__(self, *args: Any, streams: tuple[TextIO | None, TextIO | None] = (None, None), **kw: Any):
        super().__init__(*args, **kw)
        self.streams = streams

    def error(self, message: str) -> NoReturn:
        raise _ParseError(self, message)

    def _print_message(self, message: str, file: Any = None) -> None:
        if message:
            out, err = self.streams
            stream = out if file is None or file is sys.stdout else err
            (stream or file or sys.stderr).write(message)


def _suggestion(parser: argparse.ArgumentParser, message: str) -> str:
    """ "; did you mean ..." for a mistyped command, choice or option (as git does)."""
    choice = re.search(r"invalid choice: '(.*?)' \(choose from (.*)\)$", message)
    if choice:
        word, options = choice.group(1), re.findall(r"'(.*?)'", choice.group(2))
    else:
        unknown = re.match(r"unrecognized arguments: (\S+)", message)
        if not unknown:
            return ""
        word = unknown.group(1).split("=", 1)[0]
        options = [o for action in parser._actions for o in action.option_strings]
    import difflib  # only on a usage error

    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class _Version(argparse.Action):
    """``--version``, the version looked up only when asked for (reading the installed package's metadata
    costs a short command more than the rest of its parsing)."""

    def __init__(self, option_strings: Sequence[str], dest: str, look_up: Callable[[], str]) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS)
        self.help = "show program's version number and exit"
        self.look_up = look_up

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> NoReturn:
        parser._print_message(f"{parser.prog} {self.look_up()}\n", sys.stdout)
        parser.exit()


# -- declaring commands --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Option:
    flags: tuple[str, ...]
    kwargs: dict[str, Any]

    def add(self, parser: argparse._ActionsContainer) -> None:
        parser.add_argument(*self.flags, **self.kwargs)


@dataclass(frozen=True, slots=True)
class _Exclusive:
    options: tuple[_Option, ...]

    def add(self, parser: argparse._ActionsContainer) -> None:
        group = parser.add_mutually_exclusive_group()
        for o in self.options:
            o.add(group)


_Spec = _Option | _Exclusive
_declared: dict[Run, list[_Spec]] = {}
"""The options declared on a body, collected until its :meth:`Commands.command` takes them."""


class _Decorator:
    def __init__(self, *specs: _Spec) -> None:
        self.specs = specs

    def __call__(self, run: Run) -> Run:
        # Decorators apply bottom up: put these in front to keep the order they are written in.
        _declared.setdefault(run, [])[:0] = self.specs
        return run


def option(*flags: str, **kwargs: Any) -> _Decorator:
    """An option or a positional argument of a command, as ``ArgumentParser.add_argument`` takes it."""
    return _Decorator(_Option(flags, kwargs))


def exclusive(*options: _Decorator) -> _Decorator:
    """Options of which only one may be given."""
    return _Decorator(_Exclusive(tuple(s for o in options for s in o.specs if isinstance(s, _Option))))


def together(*options: _Decorator) -> _Decorator:
    """Several options as one decorator (the pairs many commands take)."""
    return _Decorator(*(s for o in options for s in o.specs))


@dataclass(frozen=True, slots=True)
class _Command:
    name: str
    summary: str
    example: str
    run: Run
    specs: list[_Spec] = field(default_factory=list)


class Commands:
    """The commands, in the order they were declared (the order ``--help`` lists them)."""

    def __init__(self, description: str, epilog: str, version: Callable[[], str]) -> None:
        self._commands: dict[str, _Command] = {}
        self._top = {"description": description, "epilog": epilog}
        self._version = version

    def command(self, name: str, summary: str, example: str) -> Callable[[Run], Run]:
        """Declare ``run`` the body of ``name``; ``summary`` and ``example`` head its ``--help``."""

        def register(run: Run) -> Run:
            self._commands[name] = _Command(name, summary, example, run, _declared.pop(run, []))
            return run

        return register

    def parser(
        self, out: TextIO | None = None, err: TextIO | None = None, *, argv: Sequence[str] | None = None
    ) -> Parser:
        """The parser of every command; with ``argv``, one that parses ``argv`` the same but holds only the
        command ``argv`` names (building every command's options costs a short command more than its own
        work), or every command when ``argv`` names none or asks ``video-ledger`` itself for help."""
        streams = (out, err)
        parser = Parser(prog=PROG, streams=streams, **self._top)
        parser.add_argument("--version", action=_Version, look_up=self._version)
        ledger_options(parser, top=True)
        only = None if argv is None else _only_command(parser, _glue_negative_values(argv), self._commands)
        sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
        sub.required = True
        for c in self._commands.values() if only is None else [self._commands[only]]:
            p = sub.add_parser(
                c.name,
                help=c.summary,
                description=f"{c.summary}\n\nexample:\n  {PROG} {c.example}",
                formatter_class=argparse.RawDescriptionHelpFormatter,
                streams=streams,
            )
            ledger_options(p, top=False)
            for spec in c.specs:
                spec.add(p)
            p.set_defaults(run=c.run)
        return parser


def parse(parser: Parser, argv: Sequence[str]) -> argparse.Namespace:
    """``argv`` parsed; bad usage is :class:`BadUsage` (``--help`` and ``--version``: ``SystemExit(0)``).
    An unknown option is reported by the command it was given to, with a suggestion, and an option given
    on the wrong side of COMMAND says where it goes."""
    words = _glue_negative_values(argv)
    try:
        args, extras = parser.parse_known_args(words)
        if extras:
            subparsers(parser)[args.command].error(f"unrecognized arguments: {' '.join(extras)}")
    except _ParseError as exc:
        raise BadUsage(_misplaced(parser, words) or exc.line()) from None
    return args


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


# -- options on the wrong side of COMMAND --------------------------------------------------------------


def _action(parser: argparse.ArgumentParser, word: str) -> argparse.Action | None:
    """The option ``word`` (``--opt`` or ``--opt=value``) names in ``parser``, as argparse matches it
    (exactly, or a long option's unique prefix)."""
    name = word.split("=", 1)[0]
    exact = [a for a in parser._actions if name in a.option_strings]
    if exact or not name.startswith("--"):
        return exact[0] if exact else None
    found = {id(a): a for a in parser._actions for o in a.option_strings if o.startswith(name)}
    return next(iter(found.values())) if len(found) == 1 else None


def _command_at(
    parser: argparse.ArgumentParser, words: Sequence[str], commands: Collection[str] | None = None
) -> int | None:
    """Where COMMAND is in ``words``: the first command name (of ``commands``, default the parser's) that
    is not the value of a ledger option."""
    commands = subparsers(parser) if commands is None else commands
    for i, word in enumerate(words):
        if word == "--":
            return None
        previous = words[i - 1] if i else ""
        before = _action(parser, previous) if previous.startswith("-") else None
        is_value = before is not None and before.nargs is None and "=" not in previous
        if word in commands and not is_value:
            return i
    return None


def _only_command(
    parser: argparse.ArgumentParser, words: Sequence[str], commands: Collection[str]
) -> str | None:
    """The command ``words`` name, if every word before it is a ledger option of ``parser`` (not its help or
    version): then that command's parser alone parses ``words`` as the full one does."""
    at = _command_at(parser, words, commands)
    if at is None:
        return None
    for word in words[:at]:
        if word.startswith("-"):
            action = _action(parser, word)
            if action is None or isinstance(action, argparse._HelpAction | _Version):
                return None
    return words[at]


def _misplaced(parser: argparse.ArgumentParser, words: Sequence[str]) -> str | None:
    """The one line for a command's option given before COMMAND, or video-ledger's own after it."""
    at = _command_at(parser, words)
    if at is None:
        return None
    name = words[at]
    command = subparsers(parser)[name]
    for word in words[:at]:
        if word.startswith("-") and _action(parser, word) is None and _action(command, word) is not None:
            typed = word.split("=", 1)[0]
            return (
                f"{PROG}: error: {typed} is an option of {name!r}: put it after the command: "
                f"{PROG} {name} {typed} … (see {PROG} {name} --help)"
            )
    for word in words[at + 1 :]:
        if word == "--":
            break
        if word.startswith("-") and _action(command, word) is None and _action(parser, word) is not None:
            typed = word.split("=", 1)[0]
            return (
                f"{PROG} {name}: error: {typed} is an option of {PROG} itself: put it before the command: "
                f"{PROG} {typed} {name} … (see {PROG} --help)"
            )
    return None


_GLUED = ("--older-than", "--expect-head")
"""Options whose value may be written negative (and is then refused with the option's own error)."""


def _glue_negative_values(argv: Sequence[str]) -> list[str]:
    """``--older-than -1h`` as ``--older-than=-1h`` (and ``--expect-head -1:HASH``): argparse takes a word
    that starts with ``-`` (and is not a plain number) for an option, and would say "expected one argument"
    instead of the value's own error."""
    argv, glued = list(argv), list[str]()
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            return glued + argv[i:]
        if word in _GLUED and i + 1 < len(argv) and re.match(r"-[0-9]", argv[i + 1]):
            glued.append(f"{word}={argv[i + 1]}")
            i += 2
            continue
        glued.append(word)
        i += 1
    return glued


# -- the ledger options --------------------------------------------------------------------------------


def ledger_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The options that may come before or after COMMAND (``video-ledger list --dir X`` works too).

    On the subcommands they default to SUPPRESS, so a value given after COMMAND wins and one given before
    it is kept when none is given after."""

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    group = parser.add_argument_group("ledger options (before or after COMMAND)")
    group.add_argument(
        "--dir",
        metavar="DIR",
        type=path,
        help=f"ledger directory (default: ${DIR_ENV}, else ./data)",
        default=default(None),
    )
    group.add_argument(
        "--store",
        metavar="STORE",
        type=path,
        help=f"where the events are: a ledger directory or a postgresql:// URL (default: ${STORE_ENV}, else "
        "DIR's events.jsonl); with a URL, DIR holds this host's snapshot and checkpoint",
        default=default(None),
    )
    group.add_argument(
        "--snapshot",
        metavar="PATH",
        type=path,
        help="the snapshot the app reads (default: DIR/generated-videos.json)",
        default=default(None),
    )
    group.add_argument(
        "--no-project",
        action="store_true",
        default=default(False),
        help="writers only append; the snapshot is brought up to date by `watch` (for fast pipelines)",
    )
    group.add_argument(
        "--wide",
        action="store_true",
        default=default(False),
        help="print table cells in full even on a terminal (they are never cut when piped)",
    )
    group.add_argument(
        "--force-clock",
        action="store_true",
        default=default(False),
        help="record at this host's clock even if it reads more than 30 days after the last event "
        "(the ledger was idle that long; see docs/lifecycle.md, Time)",
    )


# -- value types ---------------------------------------------------------------------------------------


def path(text: str) -> str:
    """A path that is not empty (``--dir "$UNSET"`` would otherwise mean the current directory, and a
    writer would create a ledger there)."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path names no ledger (is a variable unset?)")
    return text


def int_at_least(low: int, *, at_most: int | None = None) -> Callable[[str], int]:
    """A whole number in ``low..at_most``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (at_most is not None and value > at_most):
            span = f"at least {low}" if at_most is None else f"between {low} and {at_most}"
            raise argparse.ArgumentTypeError(f"{text} is out of range: it must be {span}")
        return value

    return parse


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) for a server to listen on."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (such as 127.0.0.1:9464)")
    return host, int(port)


def seconds_at_least(low: float) -> Callable[[str], float]:
    """:func:`seconds`, and no fewer than ``low``."""

    def parse(text: str) -> float:
        value = seconds(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"{text} is too small: it must be at least {low:g}")
        return value

    return parse


def seconds(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 10**9:
        raise argparse.ArgumentTypeError(f"{text} is out of range: it must be between 0 and 1000000000")
    return value


def fraction(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is out of range: it must be between 0 and 1")
    return value


_MAX_DURATION = dt.timedelta(days=36500)


def mapping(text: str) -> tuple[str, str]:
    """``PREFIX=DIR``: a URL path prefix and the directory its files are in (``/videos/=static/videos``)."""
    prefix, equals, directory = text.partition("=")
    if not equals or not prefix.startswith("/") or not directory:
        raise argparse.ArgumentTypeError(f"{text!r} is not PREFIX=DIR, like /videos/=static/videos")
    return (prefix if prefix.endswith("/") else prefix + "/", directory)


def span(text: str) -> float:
    """Seconds, fractions and ``ms`` allowed: ``90s``, ``10m``, ``250ms``, ``1.5h``, ``0`` (a lease, a
    backoff)."""
    try:
        return parse_duration(text)
    except InvalidEntryError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def duration(text: str) -> dt.timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = text[:-1], text[-1:]
    if unit in units and number[:1] == "-" and number[1:].isascii() and number[1:].isdigit():
        raise argparse.ArgumentTypeError(
            f"{text} is out of range: it must be more than 0 (negative durations are refused)"
        )
    if unit not in units or not number.isascii() or not number.isdigit() or int(number) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 15m, 2h or 1d")
    if int(number) * units[unit] > _MAX_DURATION.total_seconds():
        raise argparse.ArgumentTypeError(f"{text} is out of range: it must be at most 36500d (100 years)")
    return dt.timedelta(seconds=int(number) * units[unit])


# -- shell completion ----------------------------------------------------------------------------------


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """A bash (or zsh, through bashcompinit) completion script generated from ``parser``: commands, each
    command's options, and the choices of options that have them; anything else completes file names."""
    commands = subparsers(parser)
    top = [o for a in parser._actions for o in a.option_strings]
    cases: list[str] = []
    choices: dict[str, list[str]] = {}
    for name, sub in commands.items():
        options = [o for a in sub._actions for o in a.option_strings if o != "-h"]
        arguments: list[str] = []
        for action in sub._actions:
            if action.choices and action.option_strings:
                for o in action.option_strings:
                    choices[o] = [str(c) for c in action.choices]
            elif action.choices:
                arguments += [str(c) for c in action.choices]
        cases.append(f'        {name}) opts="{" ".join(options)}"; args="{" ".join(arguments)}" ;;')
    choice_cases = [
        f'        {o}) COMPREPLY=($(compgen -W "{" ".join(c)}" -- "$cur")); return ;;'
        for o, c in sorted(choices.items())
    ]
    body = _BASH.format(
        prog=PROG, shell=shell, names="|".join(commands), choice_cases="\n".join(choice_cases),
        top=" ".join(top), commands=" ".join(commands), cases="\n".join(cases),
    )  # fmt: skip
    if shell == "zsh":
        return (
            f"# {PROG} completion for zsh: bash's, through bashcompinit\n"
            "autoload -U +X bashcompinit && bashcompinit\n" + body
        )
    return body


_BASH = """# {prog} completion for bash (generated by `{prog} completion {shell}`)
_video_ledger() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}" cmd="" opts="" args="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
            {names}) cmd="${{COMP_WORDS[i]}}"; break ;;
        esac
    done
    case "$prev" in
{choice_cases}
        --dir|--snapshot|--media|--root|--output|-o) COMPREPLY=(); return ;;
    esac
    case "$cmd" in
        "") opts="{top}"; args="{commands}" ;;
{cases}
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$args" -- "$cur"))  # none: file names (complete -o default)
    fi
}}
complete -o default -F _video_ledger {prog}
"""
