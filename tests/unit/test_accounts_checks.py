"""The pure checks of accounts and web.auth: names, roles, scopes and where a login may send the browser."""

from __future__ import annotations

import pytest

from warnings_svc.lifecycle.transitions import Role
from warnings_svc.web.accounts import AccountError, check_name, check_role, check_scopes
from warnings_svc.web.auth import DEFAULT_NEXT, safe_next


@pytest.mark.parametrize("name", ["li", "li.wei", "wang_2", "a-b", "z" * 32])
def test_good_names_pass(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "a", "Li", "2li", "_li", "li wei", "li/wei", "z" * 33, "李伟"])
def test_bad_names_are_refused_in_one_line(name: str) -> None:
    with pytest.raises(AccountError) as refused:
        check_name(name)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("role", list(Role))
def test_every_lifecycle_role_is_a_role(role: Role) -> None:
    assert check_role(role.value) is role


def test_an_unknown_role_names_the_known_ones() -> None:
    with pytest.raises(AccountError, match="roles: forecaster, approver, operations, department, admin"):
        check_role("chief")


def test_scopes_are_a_sorted_non_empty_subset_of_read_and_write() -> None:
    assert check_scopes(["write", "read", "write"]) == ["read", "write"]
    for bad in ([], ["admin"], ["read", "Write"]):
        with pytest.raises(AccountError):
            check_scopes(bad)


@pytest.mark.parametrize(
    "target", ["/", "/console/", "/console/warnings/7?lang=en", "/console/#map", "/api/v1/warnings?x=%2F%2Fa"]
)
def test_local_paths_are_kept(target: str) -> None:
    assert safe_next(target) == target


@pytest.mark.parametrize(
    "target",
    [
        None,
        "",
        "console/",
        "https://evil.example/",
        "http:/evil.example",
        "//evil.example",
        "///evil.example",
        "/\\evil.example",
        "\\/evil.example",
        "javascript:alert(1)",
        "/console/\r\nSet-Cookie: x=1",
        "/\t/evil.example",
        "/" + "a" * 3000,
    ],
)
def test_anything_else_goes_to_the_console(target: str | None) -> None:
    assert safe_next(target) == DEFAULT_NEXT
