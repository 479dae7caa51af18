import pytest

from apps.orders.cards import ALIGNMENT, USABLE_BYTES, usable_bytes


@pytest.mark.parametrize("size_gb", [8, 16, 32, 64, 128, 256, 512])
def test_usable_bytes_stay_below_what_any_card_of_that_size_holds(size_gb):
    usable = usable_bytes(size_gb)
    # The smallest cards seen hold ~95% of nominal: keep clear of that.
    assert usable <= 0.94 * size_gb * 10**9
    assert usable >= 0.92 * size_gb * 10**9
    assert usable % ALIGNMENT == 0


def test_the_table_matches_its_documented_formula():
    for size_gb, usable in USABLE_BYTES.items():
        assert usable == int(size_gb * 10**9 * 93 // 100) // ALIGNMENT * ALIGNMENT


def test_bigger_cards_hold_more():
    sizes = sorted(USABLE_BYTES)
    assert [usable_bytes(s) for s in sizes] == sorted(USABLE_BYTES.values())


@pytest.mark.parametrize("size_gb", [0, 4, 24, 1024, "32", None])
def test_an_unknown_card_size_raises_a_value_error_listing_the_known_sizes(size_gb):
    with pytest.raises(ValueError, match=r"unknown SD-card size .* use one of 8, 16"):
        usable_bytes(size_gb)
