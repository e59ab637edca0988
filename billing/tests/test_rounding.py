"""The shared rounding rule: allocations add up to the rounded total and stay within a cent."""

import random
from decimal import Decimal as D

import pytest

from billing.money import round_cents
from billing.rounding import allocate_cents


def test_remainder_goes_to_the_largest_fraction():
    parts = {"a": D("0.335"), "b": D("0.335"), "c": D("0.33")}
    assert allocate_cents(parts) == {"a": D("0.34"), "b": D("0.33"), "c": D("0.33")}


def test_three_thirds_of_a_dollar_still_make_a_dollar():
    third = D(1) / D(3)
    assert sum(allocate_cents({1: third, 2: third, 3: third}).values()) == D("1.00")


def test_negative_parts_credits_and_refunds():
    parts = {"charge": D("10.005"), "credit": D("-3.3333333333"), "refund": D("-0.0016666667")}
    allocated = allocate_cents(parts)
    assert sum(allocated.values()) == round_cents(sum(parts.values())) == D("6.67")


def test_explicit_total_is_honoured():
    assert allocate_cents({"x": D("1.004"), "y": D("2.004")}, total=D("3.01")) == {
        "x": D("1.01"),
        "y": D("2.00"),
    }


def test_nothing_to_allocate():
    assert allocate_cents({}) == {}
    with pytest.raises(ValueError):
        allocate_cents({}, total=D("1.00"))


@pytest.mark.parametrize("seed", range(5))
def test_ten_decimal_parts_always_tie(seed):
    rng = random.Random(seed)
    for _ in range(200):
        parts = {
            i: D(rng.randint(-(10**12), 10**12)).scaleb(-10) for i in range(rng.randint(1, 40))
        }
        allocated = allocate_cents(parts)
        assert sum(allocated.values()) == round_cents(sum(parts.values()))
        assert all(abs(allocated[k] - parts[k]) < D("0.01") for k in parts)
