"""Recipe durations: every accepted spelling and clear errors for the rest."""
import pytest

from hpcbench.common.durations import parse_duration


@pytest.mark.parametrize("value, seconds", [
    (90, 90.0), (0, 0.0), (1.5, 1.5), ("90", 90.0), ("90s", 90.0), ("2m", 120.0),
    ("1h30m", 5400.0), ("1h", 3600.0), ("2m15s", 135.0), ("500ms", 0.5), ("1.5s", 1.5),
    (" 10s ", 10.0), ("1h0m30s", 3630.0), ("1s250ms", 1.25), ("2M", 120.0),
])
def test_accepted_forms(value, seconds):
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [
    "2x", "", "s", "m5", "1m1h", "5s5s", "-5s", -1, "1 h", "fast", True, None, [10], "10s extra",
    float("nan"), float("inf"),
])
def test_rejected_forms_name_the_value_and_the_accepted_forms(value):
    with pytest.raises(ValueError) as error:
        parse_duration(value)
    message = str(error.value)
    assert repr(value) in message
    assert '"1h30m"' in message
