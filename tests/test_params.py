"""The shared config checks of mindlib.params: one "choose one of" check, Literal fields, reused defaults."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from mindlib.params import check_choice, check_literal_fields, default_of


def test_check_choice_names_the_field_the_value_the_choices_and_the_closest():
    check_choice("token", ("both", "token", "prior"), "X.mode")  # no error
    with pytest.raises(ValueError) as err:
        check_choice("tokn", ("both", "token", "prior"), "X.mode")
    assert (
        str(err.value)
        == "X.mode must be one of ('both', 'token', 'prior'), got 'tokn' (did you mean 'token'?)"
    )
    with pytest.raises(ValueError, match=r"got 3$"):  # not a string: no closest match, no crash
        check_choice(3, ("a", "b"), "X.kind")


@dataclass(frozen=True)
class _Example:
    kind: Literal["a", "bb"] = "a"
    n: int = 1
    xs: tuple = field(default_factory=lambda: (1, 2))

    def __post_init__(self):
        check_literal_fields(self)


def test_literal_fields_are_checked_from_their_annotation_and_defaults_are_read():
    assert _Example(kind="bb").kind == "bb"
    with pytest.raises(ValueError, match=r"_Example\.kind must be one of \('a', 'bb'\), got 'b'"):
        _Example(kind="b")
    assert default_of(_Example, "n") == 1 and default_of(_Example, "xs") == (1, 2)
    with pytest.raises(ValueError, match=r"no field 'm'"):
        default_of(_Example, "m")
