"""Ganeti's query filter language, parsed on the client (``ganeti.qlang``).

``gnt-instance list -F 'pnode == "node1" and admin_state'`` turns its text
into a LUXI filter list (``["&", ["=", "pnode", "node1"], ["?", "admin_state"]]``)
that masterd compiles (``masterd.master.compile_filter``). Syntax (Ganeti's
``man ganeti``, "Query filters"):

- ``field == value``, ``=`` (legacy), ``!=``, ``<``, ``<=``, ``>``, ``>=``;
  a value is a quoted string (``"..."`` or ``'...'``, backslash escapes the
  next character) or a base-10 integer (optional sign);
- ``value in field`` / ``value not in field`` (list membership, ``=[]``);
- ``field =~ m/regexp/flags`` / ``!~`` (delimiters ``/ # ^ |``, the ``m`` is
  optional, a backslash before the delimiter escapes it, flags ``i`` and ``s``);
- ``field =* "glob"`` / ``!*`` (DNS name globbing: ``*`` and ``?`` do not
  match the dot; ``"web*"`` also matches ``web1.example.com``);
- a bare ``field`` is true when the field's value is true (``?``);
- ``not`` (binds tightest), ``and``, ``or`` (loosest), parentheses.

Field names start with a letter, then letters, digits, ``_``, ``/`` and ``.``
(``be/vcpus``, ``disk.size/0``). Keywords are case-sensitive. Syntax errors
raise :class:`errors.QueryFilterParseError` (ECODE_INVAL), which the CLI
prints with the text and a caret under the error (exit code 1, as Ganeti).

Imported only when a list command gets a filter (``-F`` or an argument with
filter/glob characters), so plain commands do not pay for it.
"""

from __future__ import annotations

import re
from typing import Any

from corral import errors

OP_OR = "|"
OP_AND = "&"
OP_NOT = "!"
OP_TRUE = "?"
OP_EQUAL = "="
OP_NOT_EQUAL = "!="
OP_LT = "<"
OP_LE = "<="
OP_GT = ">"
OP_GE = ">="
OP_REGEXP = "=~"
OP_CONTAINS = "=[]"

# Characters that make a single list argument a filter (Ganeti's
# QLANG_FILTER_DETECTION_CHARS) and a name argument a glob pattern.
FILTER_DETECTION_CHARS = frozenset("!\"'()/<=>\\~ \t\n\r\x0b\x0c")
GLOB_DETECTION_CHARS = frozenset("*?")

_BINARY_OPS = {"==": OP_EQUAL, "=": OP_EQUAL, "!=": OP_NOT_EQUAL, "<": OP_LT, "<=": OP_LE,
               ">": OP_GT, ">=": OP_GE}
# Longest first, so that "<=" is not read as "<" followed by "=".
_OPERATORS = ("==", "!=", "<=", ">=", "=~", "!~", "=*", "!*", "=", "<", ">")
_KEYWORDS = frozenset({"and", "or", "not", "in"})
_FIELD_RE = re.compile(r"[A-Za-z][A-Za-z0-9_/.]*")
_NUMBER_RE = re.compile(r"[-+]?[0-9]+")
_REGEXP_DELIMITERS = "/#^|"
_REGEXP_FLAGS = frozenset("si")


def dns_name_glob_pattern(pattern: str) -> str:
    """Regular expression of a DNS name glob (``utils.DnsNameGlobPattern``):
    ``*`` matches any characters but the dot, ``?`` one; matching starts at
    the leftmost part and the pattern may leave off trailing domain parts."""
    parts = []
    for text in re.findall(r"\*|\?|[^*?]+", pattern):
        parts.append("[^.]*" if text == "*" else "[^.]" if text == "?" else re.escape(text))
    return "^" + "".join(parts) + r"(\..*)?$"


class _Parser:
    """Recursive descent over the text (no separate lexer: what follows
    ``=~`` is a regular expression, not tokens)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    # -- scanning -------------------------------------------------------------
    def error(self, message: str, pos: int | None = None) -> errors.QueryFilterParseError:
        pos = self.pos if pos is None else pos
        line_start = self.text.rfind("\n", 0, pos) + 1
        line_end = self.text.find("\n", pos)
        line = self.text[line_start:line_end if line_end >= 0 else len(self.text)]
        column = pos - line_start + 1
        detail = f"{message} (at char {pos}), (line:{self.text.count(chr(10), 0, pos) + 1}, " \
                 f"col:{column})"
        return errors.QueryFilterParseError(
            f"Failed to parse query filter '{self.text}': {detail}",
            details=[line, " " * (column - 1) + "^", detail])

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek_word(self) -> str | None:
        self.skip_space()
        m = _FIELD_RE.match(self.text, self.pos)
        return m.group(0) if m else None

    def accept_keyword(self, keyword: str) -> bool:
        if self.peek_word() == keyword:
            self.pos += len(keyword)
            return True
        return False

    def accept(self, literal: str) -> bool:
        self.skip_space()
        if self.text.startswith(literal, self.pos):
            self.pos += len(literal)
            return True
        return False

    def at_end(self) -> bool:
        self.skip_space()
        return self.pos >= len(self.text)

    # -- grammar --------------------------------------------------------------
    def parse(self) -> list[Any]:
        if self.at_end():
            raise self.error("Expected a condition, found the end of the text")
        result = self.parse_or()
        if not self.at_end():
            raise self.error(f"Unexpected text {self.text[self.pos:]!r}")
        return result

    def parse_or(self) -> list[Any]:
        operands = [self.parse_and()]
        while self.accept_keyword("or"):
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else [OP_OR, *operands]

    def parse_and(self) -> list[Any]:
        operands = [self.parse_not()]
        while self.accept_keyword("and"):
            operands.append(self.parse_not())
        return operands[0] if len(operands) == 1 else [OP_AND, *operands]

    def parse_not(self) -> list[Any]:
        if self.accept_keyword("not"):
            return [OP_NOT, self.parse_not()]
        if self.accept("("):
            inner = self.parse_or()
            if not self.accept(")"):
                raise self.error("Expected ')'")
            return inner
        return self.parse_condition()

    def parse_condition(self) -> list[Any]:
        self.skip_space()
        start = self.pos
        if self.pos < len(self.text) and (self.text[self.pos] in "\"'+-"
                                          or self.text[self.pos].isdigit()):
            value = self.parse_value()
            negate = self.accept_keyword("not")
            if not self.accept_keyword("in"):
                raise self.error("Expected 'in' or 'not in' after a value", start)
            cond = [OP_CONTAINS, self.parse_field(), value]
            return [OP_NOT, cond] if negate else cond
        field = self.parse_field()
        self.skip_space()
        op = next((o for o in _OPERATORS if self.text.startswith(o, self.pos)), None)
        if op is None:
            return [OP_TRUE, field]
        self.pos += len(op)
        if op in ("=~", "!~"):
            cond = [OP_REGEXP, field, self.parse_regexp()]
            return [OP_NOT, cond] if op == "!~" else cond
        if op in ("=*", "!*"):
            self.skip_space()
            if self.pos >= len(self.text) or self.text[self.pos] not in "\"'":
                raise self.error("Expected a quoted glob pattern")
            cond = [OP_REGEXP, field, dns_name_glob_pattern(self.parse_string())]
            return [OP_NOT, cond] if op == "!*" else cond
        return [_BINARY_OPS[op], field, self.parse_value()]

    def parse_field(self) -> str:
        word = self.peek_word()
        if word is None or word in _KEYWORDS:
            raise self.error("Expected a field name")
        self.pos += len(word)
        return word

    def parse_value(self) -> str | int:
        self.skip_space()
        if self.pos < len(self.text) and self.text[self.pos] in "\"'":
            return self.parse_string()
        m = _NUMBER_RE.match(self.text, self.pos)
        if m is None:
            raise self.error("Expected a quoted string or an integer")
        self.pos = m.end()
        return int(m.group(0))

    def parse_string(self) -> str:
        quote = self.text[self.pos]
        start = self.pos
        self.pos += 1
        chars: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                chars.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            self.pos += 1
            if char == quote:
                return "".join(chars)
            chars.append(char)
        raise self.error("Unterminated quoted string", start)

    def parse_regexp(self) -> str:
        self.skip_space()
        start = self.pos
        if self.text.startswith("m", self.pos):
            self.pos += 1
        if self.pos >= len(self.text) or self.text[self.pos] not in _REGEXP_DELIMITERS:
            raise self.error("Expected a regular expression such as m/^node/", start)
        delim = self.text[self.pos]
        self.pos += 1
        chars: list[str] = []
        while True:
            if self.pos >= len(self.text):
                raise self.error("Unterminated regular expression", start)
            char = self.text[self.pos]
            if char == "\\" and self.text.startswith(delim, self.pos + 1):
                chars.append(delim)
                self.pos += 2
                continue
            if char == "\\" and self.pos + 1 < len(self.text):
                chars.append(self.text[self.pos:self.pos + 2])
                self.pos += 2
                continue
            self.pos += 1
            if char == delim:
                break
            chars.append(char)
        m = re.compile(r"[A-Za-z]*").match(self.text, self.pos)
        flags = m.group(0) if m else ""
        unknown = sorted(set(flags) - _REGEXP_FLAGS)
        if unknown:
            raise self.error(f"Unknown regular expression flags: '{''.join(unknown)}'")
        self.pos += len(flags)
        regexp = (f"(?{''.join(sorted(set(flags)))})" if flags else "") + "".join(chars)
        try:
            re.compile(regexp)
        except re.error as exc:
            raise self.error(f"Invalid regular expression ({exc})", start) from None
        return regexp


def parse_filter(text: str) -> list[Any]:
    """The LUXI filter list of a filter text (``qlang.ParseFilter``).

    Raises :class:`errors.QueryFilterParseError` (ECODE_INVAL) with the
    position of the first error.
    """
    return _Parser(text).parse()


def is_filter_text(text: str) -> bool:
    """Whether a single list argument is a filter rather than a name."""
    return bool(FILTER_DETECTION_CHARS & set(text))


def _name_part(namefield: str, text: str, isnumeric: bool) -> list[Any]:
    if isnumeric:
        try:
            return [OP_EQUAL, namefield, int(text)]
        except ValueError:
            raise errors.OpPrereqError(f"Invalid job ID passed: {text!r}",
                                       errors.ECODE_INVAL) from None
    if GLOB_DETECTION_CHARS & set(text):
        return [OP_REGEXP, namefield, dns_name_glob_pattern(text)]
    return [OP_EQUAL, namefield, text]


def make_filter(args: list[str], force_filter: bool, namefield: str = "name",
                isnumeric: bool = False) -> list[Any] | None:
    """The query filter of a list command's arguments (``qlang.MakeFilter``).

    With ``force_filter`` (``-F``), or a single argument containing filter
    characters, the argument is parsed as a filter (exactly one is allowed:
    ``OpPrereqError`` ECODE_INVAL otherwise); else the arguments are names
    (``["|", ["=", namefield, name], ...]``, glob patterns as regular
    expressions, numbers for ``isnumeric`` name fields such as job ids);
    no arguments give None (everything).
    """
    if force_filter or (len(args) == 1 and is_filter_text(args[0])):
        if len(args) != 1:
            raise errors.OpPrereqError("Exactly one argument must be given as a filter",
                                       errors.ECODE_INVAL)
        return parse_filter(args[0])
    if args:
        return [OP_OR, *(_name_part(namefield, arg, isnumeric) for arg in args)]
    return None
