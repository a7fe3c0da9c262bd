"""Users file parsing, password schemes and reload (corral.rapi.users)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from corral.rapi.users import UsersFile, ha1, parse_users, verify_password


def test_parse_basic_forms() -> None:
    users = parse_users("""
# comment
   # indented comment

alice pw1 write
bob {cleartext}pw2 read,write
carol {HA1}abcdef
dave pw4 write , read ,
lonely
""")
    assert set(users) == {"alice", "bob", "carol", "dave"}
    assert users["alice"].password == "pw1"
    assert users["alice"].options == ("write",)
    assert users["bob"].options == ("read", "write")
    assert users["carol"].options == ()
    assert users["dave"].options == ("write", "read")


def test_later_line_wins_and_tabs() -> None:
    users = parse_users("eve\tone\twrite\neve two read\n")
    assert users["eve"].password == "two"
    assert users["eve"].options == ("read",)


def test_password_not_in_repr() -> None:
    users = parse_users("alice s3cr3t write\n")
    assert "s3cr3t" not in repr(users["alice"])


def test_ha1_is_md5_of_user_realm_password() -> None:
    expected = hashlib.md5(b"jack:Ganeti Remote API:abc123").hexdigest()
    assert ha1("jack", "abc123") == expected


def test_verify_schemes() -> None:
    assert verify_password("u", "pw", "pw")
    assert not verify_password("u", "PW", "pw")
    assert verify_password("u", "pw", "{cleartext}pw")
    assert verify_password("u", "pw", "{CLEARTEXT}pw")
    assert not verify_password("u", "{cleartext}pw", "{cleartext}pw")
    hexhash = ha1("u", "pw")
    assert verify_password("u", "pw", "{HA1}" + hexhash)
    assert verify_password("u", "pw", "{ha1}" + hexhash.upper())
    assert not verify_password("u", "other", "{HA1}" + hexhash)
    # The hash binds the user name.
    assert not verify_password("v", "pw", "{HA1}" + hexhash)
    # Unknown and empty schemes never match.
    assert not verify_password("u", "pw", "{SHA}pw")
    assert not verify_password("u", "pw", "{}pw")
    assert not verify_password("u", "{pw", "{pw")


def test_users_file_missing_then_created_then_changed(tmp_path: Path) -> None:
    path = tmp_path / "users"
    uf = UsersFile(path)
    assert uf.users() == {}
    assert uf.authenticate("a", "b") is None
    path.write_text("a b write\n")
    assert uf.authenticate("a", "b") is not None
    assert uf.authenticate("a", "wrong") is None
    path.write_text("a c read\nz y write\n")
    # Make sure the mtime differs even on coarse file systems.
    st_ = path.stat()
    os.utime(path, ns=(st_.st_atime_ns, st_.st_mtime_ns + 10_000_000))
    assert uf.authenticate("a", "b") is None
    user = uf.authenticate("a", "c")
    assert user is not None and user.options == ("read",)
    assert uf.get("z") is not None
    path.unlink()
    assert uf.users() == {}


def test_users_file_unchanged_is_not_reparsed(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text("a b write\n")
    uf = UsersFile(path)
    first = uf.users()
    time.sleep(0.01)
    assert uf.users() is first


_name = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126,
                                       blacklist_characters="#,"), min_size=1, max_size=12)
_password = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126),
                    min_size=1, max_size=16)
_option = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)


@given(st.lists(st.tuples(_name, _password, st.lists(_option, max_size=4)), max_size=8))
def test_parse_roundtrip(entries: list[tuple[str, str, list[str]]]) -> None:
    lines = []
    expected = {}
    for name, password, options in entries:
        lines.append(" ".join([name, password] + ([",".join(options)] if options else [])))
        expected[name] = (password, tuple(options))
    users = parse_users("\n".join(lines))
    assert {n: (u.password, u.options) for n, u in users.items()} == expected


@given(st.text(max_size=300))
def test_parse_never_crashes(text: str) -> None:
    users = parse_users(text)
    for name, user in users.items():
        assert name == user.name and name and user.password
        assert not name.startswith("#")


@given(_name, st.text(max_size=20), st.text(max_size=20))
def test_ha1_verification_property(user: str, password: str, other: str) -> None:
    stored = "{HA1}" + ha1(user, password)
    assert verify_password(user, password, stored)
    assert verify_password(user, other, stored) == (other == password)
