"""Ganeti's query filter language (cli/qfilter.py): parsing, name filters,
errors, and ``list -F`` against a real dev cluster."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral import errors
from corral.cli import qfilter
from corral.cli.output import format_error
from corral.cli.qfilter import make_filter, parse_filter
from corral.masterd.master import compile_filter


@pytest.mark.parametrize("text, expected", [
    ('pnode == "node1" and admin_state == "up"',
     ["&", ["=", "pnode", "node1"], ["=", "admin_state", "up"]]),
    ("pinst_cnt != 0", ["!=", "pinst_cnt", 0]),
    ("not master_candidate", ["!", ["?", "master_candidate"]]),
    ("(be/vcpus == 3 or be/vcpus == 6) and pnode.group =~ m/^rack/",
     ["&", ["|", ["=", "be/vcpus", 3], ["=", "be/vcpus", 6]],
      ["=~", "pnode.group", "^rack"]]),
    ("a and b and c or d", ["|", ["&", ["?", "a"], ["?", "b"], ["?", "c"]], ["?", "d"]]),
    ("a or b and not c", ["|", ["?", "a"], ["&", ["?", "b"], ["!", ["?", "c"]]]]),
    ("not not a", ["!", ["!", ["?", "a"]]]),
    ("x = 'y'", ["=", "x", "y"]),
    ("x<=-5", ["<=", "x", -5]),
    ("x >= +5", [">=", "x", 5]),
    ("x < 1 and x > 0", ["&", ["<", "x", 1], [">", "x", 0]]),
    ('"web" in tags', ["=[]", "tags", "web"]),
    ('"web" not in tags', ["!", ["=[]", "tags", "web"]]),
    ("3 in nic.vlans", ["=[]", "nic.vlans", 3]),
    (r"name =~ /a\/b/", ["=~", "name", "a/b"]),
    (r"name =~ m#^n\d+$#i", ["=~", "name", r"(?i)^n\d+$"]),
    ("name !~ m|x|si", ["!", ["=~", "name", "(?is)x"]]),
    ('name =* "web*.example.com"', ["=~", "name", r"^web[^.]*\.example\.com(\..*)?$"]),
    ("name !* 'db?'", ["!", ["=~", "name", r"^db[^.](\..*)?$"]]),
    (r'name == "a\"b"', ["=", "name", 'a"b']),
    ("notes and order", ["&", ["?", "notes"], ["?", "order"]]),
])
def test_parse_filter(text: str, expected: list[Any]) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize("text, column, reason", [
    ("pnode ==", 9, "Expected a quoted string or an integer"),
    ("", 1, "Expected a condition"),
    ("a and (b or c", 14, "Expected ')'"),
    ('name == "x', 9, "Unterminated quoted string"),
    ("name =~ m/[/", 9, "Invalid regular expression"),
    ("name =~ m/x/q", 13, "Unknown regular expression flags: 'q'"),
    ("name =~ 'x'", 9, "Expected a regular expression"),
    ("name =* x", 9, "Expected a quoted glob pattern"),
    ("a b", 3, "Unexpected text 'b'"),
    ('"x" tags', 1, "Expected 'in' or 'not in'"),
    ("and", 1, "Expected a field name"),
    ("x == 1.5", 7, "Unexpected text '.5'"),
])
def test_parse_errors_point_at_the_error(text: str, column: int, reason: str) -> None:
    with pytest.raises(errors.QueryFilterParseError) as info:
        parse_filter(text)
    err = info.value
    assert err.ecode == errors.ECODE_INVAL
    assert reason in str(err) and f"Failed to parse query filter '{text}'" in str(err)
    line, caret, detail = err.details
    assert line == text and caret == " " * (column - 1) + "^" and reason in detail
    code, message = format_error(err)
    assert code == 1
    assert message.splitlines()[0].startswith("Error while parsing query filter: ")
    assert message.splitlines()[1:] == err.details


def test_make_filter_names_globs_and_ids() -> None:
    assert make_filter([], False) is None
    assert make_filter(["a", "b"], False) == ["|", ["=", "name", "a"], ["=", "name", "b"]]
    assert make_filter(["*.site1"], False) == ["|", ["=~", "name", r"^[^.]*\.site1(\..*)?$"]]
    assert make_filter(["4", "7"], False, "id", isnumeric=True) == \
        ["|", ["=", "id", 4], ["=", "id", 7]]
    # One argument with filter characters is a filter even without -F.
    assert make_filter(["pinst_cnt != 0"], False) == ["!=", "pinst_cnt", 0]
    assert make_filter(["master_candidate"], True) == ["?", "master_candidate"]
    with pytest.raises(errors.OpPrereqError, match="Exactly one argument") as info:
        make_filter(["a", "b"], True)
    assert info.value.ecode == errors.ECODE_INVAL
    with pytest.raises(errors.OpPrereqError, match="Invalid job ID") as info:
        make_filter(["x"], False, "id", isnumeric=True)
    assert info.value.ecode == errors.ECODE_INVAL


def test_glob_pattern_matches_dns_names() -> None:
    regex = re.compile(qfilter.dns_name_glob_pattern("web*"))
    assert regex.match("web1") and regex.match("web1.example.com")
    assert not regex.match("aweb1") and not regex.match("db.web1")
    single = re.compile(qfilter.dns_name_glob_pattern("db?"))
    assert single.match("db1.site") and not single.match("db12") and not single.match("db")


def test_parsed_filters_compile_in_masterd() -> None:
    """Every operator the language produces is one masterd's filter compiler knows."""
    text = ('(a == 1 or b != "x") and not c and "t" in tags and name =~ m/^n/i '
            'and name !* "w*" and d < 2 and d <= 2 and d > 0 and d >= 0')
    names, predicate, used = compile_filter(parse_filter(text))
    assert names is None and predicate is not None
    assert set(used) == {"a", "b", "c", "tags", "name", "d"}
    row = {"a": (0, 1), "b": (0, "y"), "c": (0, False), "tags": (0, ["t"]),
           "name": (0, "Node1"), "d": (0, 1)}
    assert predicate(row) is True
    assert predicate({**row, "tags": (0, [])}) is False


# -- round trip: filter lists -> text -> the same lists ----------------------------------

_FIELD = st.from_regex(r"[A-Za-z][A-Za-z0-9_/.]{0,8}", fullmatch=True).filter(
    lambda f: f not in ("and", "or", "not", "in", "m"))
_STRING = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"),
                  max_size=8)
_VALUE = st.one_of(st.integers(-10**6, 10**6), _STRING)
_REGEXP = st.from_regex(r"[a-z0-9^$.]{0,6}", fullmatch=True)


def _quote(value: str | int) -> str:
    if isinstance(value, int):
        return str(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _conditions() -> st.SearchStrategy[tuple[str, list[Any]]]:
    binary = st.builds(
        lambda f, op, v: (f"{f} {op} {_quote(v)}", [{"==": "="}.get(op, op), f, v]),
        _FIELD, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), _VALUE)
    boolean = _FIELD.map(lambda f: (f, ["?", f]))
    contains = st.builds(lambda v, f: (f"{_quote(v)} in {f}", ["=[]", f, v]), _VALUE, _FIELD)
    regexp = st.builds(lambda f, r: (f"{f} =~ m/{r}/", ["=~", f, r]), _FIELD, _REGEXP)
    return st.one_of(binary, boolean, contains, regexp)


def _filters() -> st.SearchStrategy[tuple[str, list[Any]]]:
    def extend(children: st.SearchStrategy[tuple[str, list[Any]]]
               ) -> st.SearchStrategy[tuple[str, list[Any]]]:
        def logic(op: str, word: str) -> st.SearchStrategy[tuple[str, list[Any]]]:
            return st.lists(children, min_size=2, max_size=3).map(
                lambda subs: (f" {word} ".join(f"({t})" for t, _ in subs),
                              [op, *(f for _, f in subs)]))
        negation = children.map(lambda c: (f"not ({c[0]})", ["!", c[1]]))
        return st.one_of(logic("&", "and"), logic("|", "or"), negation)
    return st.recursive(_conditions(), extend, max_leaves=6)


@given(_filters())
def test_round_trip(case: tuple[str, list[Any]]) -> None:
    text, expected = case
    assert parse_filter(text) == expected


# -- gnt-instance/node/job list -F on a dev cluster --------------------------------------

@pytest.fixture(scope="module")
def filter_cluster(module_dev_cluster: Callable[..., Any],
                   ganeti_os_noop: Any) -> Iterator[Any]:
    yield module_dev_cluster(2)


def _ok(run_cli: Callable[..., Any], cluster: Any, *args: str) -> str:
    res = run_cli(list(args), cluster)
    assert res.returncode == 0, f"{args}: {res.stdout}\n{res.stderr}"
    return res.stdout


@pytest.mark.integration
def test_list_filter_on_a_dev_cluster(filter_cluster: Any,
                                      run_cli: Callable[..., Any]) -> None:
    c = filter_cluster
    for name, node in (("web1", "node1"), ("web2", "node2"), ("db1", "node1")):
        _ok(run_cli, c, "gnt-instance", "add", "-t", "diskless", "-o", "noop", "-n", node,
            "--no-ip-check", "--no-name-check", "--no-start", name)
    _ok(run_cli, c, "gnt-instance", "startup", "web1")

    def names(*args: str) -> list[str]:
        return sorted(_ok(run_cli, c, *args, "-o", "name", "--no-headers").split())

    assert names("gnt-instance", "list", "-F", 'pnode == "node1" and admin_state == "up"') \
        == ["web1"]
    assert names("gnt-instance", "list", "-F", 'pnode == "node1"') == ["db1", "web1"]
    assert names("gnt-instance", "list", "--filter", "admin_up or name =~ m/^DB/i") \
        == ["db1", "web1"]
    assert names("gnt-instance", "list", "-F", "not admin_up and pnode != 'node1'") == ["web2"]
    assert names("gnt-instance", "list", "-F", "name !~ m/^web/") == ["db1"]
    # Without -F: one argument with filter characters, and glob patterns.
    assert names("gnt-instance", "list", 'pnode != "node1"') == ["web2"]
    assert names("gnt-instance", "list", "web*") == ["web1", "web2"]
    assert names("gnt-instance", "list", "db1", "web2") == ["db1", "web2"]
    assert names("gnt-node", "list", "-F", "pinst_cnt == 2") == ["node1"]
    assert names("gnt-node", "list", "-F", "name == 'node2' or pinst_cnt == 2") \
        == ["node1", "node2"]
    every_job = [line.split() for line in _ok(run_cli, c, "gnt-job", "list", "-o",
                                              "id,status", "--no-headers").splitlines()]
    assert len(every_job) >= 5
    limit = int(every_job[-1][0])
    jobs = _ok(run_cli, c, "gnt-job", "list", "-F", f'status == "success" and id < {limit}',
               "-o", "id,status", "--no-headers").splitlines()
    assert [line.split() for line in jobs] == \
        [j for j in every_job if j[1] == "success" and int(j[0]) < limit]

    res = run_cli(["gnt-instance", "list", "-F", "pnode =="], c)
    assert res.returncode == 1
    assert res.stderr.splitlines()[:3] == [
        ("Error while parsing query filter: Failed to parse query filter 'pnode ==': "
         "Expected a quoted string or an integer (at char 8), (line:1, col:9)"),
        "pnode ==", "        ^"]
    res = run_cli(["gnt-instance", "list", "-F", "nosuchfield"], c)
    assert res.returncode == 1 and "Unknown field(s) in query filter: nosuchfield" in res.stderr
    res = run_cli(["gnt-instance", "list", "-F", "a", "b"], c)
    assert res.returncode == 1 and "Exactly one argument must be given as a filter" in res.stderr
