"""The one checker of configuration values against type hints."""
import pytest

from qcslib.typed import checked, describe


@pytest.mark.parametrize("value, hint, expected", [
    (3, float, 3), ("1e-4", float, 1e-4), (2.5, float, 2.5), ([1, 2, 3], tuple[int, int, int], (1, 2, 3)),
    (None, str | None, None), ("a", str | None, "a"), (["x", "y"], str | tuple[str, ...] | None, ("x", "y")),
    (True, bool, True), ({"a": 1}, dict, {"a": 1}), ([1], list[int], [1]),
])
def test_values_of_the_hinted_type_pass_converted(value, hint, expected):
    assert checked("key", value, hint) == expected


@pytest.mark.parametrize("value, hint, message", [
    (True, int, "n must be int, got True"), (1, bool, "n must be bool, got 1"), (True, float, "n must be float"),
    ("fast", float, "n must be float, got 'fast'"), ([1, 2], tuple[int, int, int], "n must be a list of 3 int"),
    ([1, "a"], tuple[int, ...], "n must be a list of int"), (7, str | tuple[str, ...] | None,
                                                            "n must be str, a list of str or None, got 7"),
    ("x", dict, "n must be dict, got 'x'"),
])
def test_other_values_are_one_line_type_errors(value, hint, message):
    with pytest.raises(TypeError) as error:
        checked("n", value, hint)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_hints_read_as_words():
    assert describe(int | None) == "int or None" and describe(tuple[float, float]) == "a list of 2 float"
