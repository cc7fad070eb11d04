"""Pricing profiles: the built-in files load, bad files give one line naming file, field and rule."""

from pathlib import Path

import pytest

from engine.pricing import DEFAULT_PRICING, PricingError, apply_overrides, list_pricing, load_pricing

BAD = Path(__file__).parent / "data" / "pricing"


def test_builtin_profiles_load_and_say_where_their_prices_come_from():
    names = list_pricing()
    assert names == ["a100-80gb-rental", "h100-sxm-owned-5y", "h100-sxm-rental", "h200-rental", "l40s-rental"]
    for name in names:
        profile = load_pricing(name)
        assert profile.name == name and profile.source and profile.assumptions and profile.gpu
    assert load_pricing("default").name == DEFAULT_PRICING == "h100-sxm-rental"


def test_rental_and_ownership_profiles_hold_what_the_cost_model_needs():
    rental = load_pricing("h100-sxm-rental")
    assert rental.basis == "rental" and rental.rental.dollars_per_gpu_hour == 2.5
    assert rental.energy.included_in_gpu_price
    owned = load_pricing("h100-sxm-owned-5y")
    assert owned.basis == "ownership" and owned.ownership.depreciation_years == 5
    assert not owned.energy.included_in_gpu_price and owned.energy.pue == 1.3


def test_load_by_path_takes_the_name_from_the_file(tmp_path):
    path = tmp_path / "my-cluster.toml"
    path.write_text(
        'gpu = "H100"\nsource = "our invoice, 2026-01"\n[rental]\ndollars_per_gpu_hour = 1.99\n'
        "[energy]\nincluded_in_gpu_price = true\ndollars_per_kwh = 0.1\n"
    )
    profile = load_pricing(path)
    assert profile.name == "my-cluster" and profile.rental.dollars_per_gpu_hour == 1.99
    assert load_pricing(str(path)) == profile


@pytest.mark.parametrize(
    ("file", "message"),
    [
        ("bad_missing_field.toml", "bad_missing_field.toml: missing field 'source'"),
        ("bad_negative.toml", "bad_negative.toml: field 'rental.dollars_per_gpu_hour': must be >= 0 (got -2.5)"),
        ("bad_unknown_key.toml", "bad_unknown_key.toml: unknown key 'energy.price'"),
        ("bad_not_toml.toml", "bad_not_toml.toml: not valid TOML: Invalid statement (at line 1, column 1)"),
        ("bad_binary.toml", "bad_binary.toml: not a TOML file (not UTF-8 text)"),
        ("bad_both_bases.toml", "bad_both_bases.toml: give exactly one of [rental] or [ownership]"),
        ("bad_pue.toml", "bad_pue.toml: field 'energy.pue': must be >= 1 (got 0.8)"),
    ],
)
def test_bad_files_give_one_line_naming_file_field_and_rule(file, message):
    with pytest.raises(PricingError) as info:
        load_pricing(BAD / file)
    text = str(info.value)
    assert text.endswith(message) and str(BAD / file) in text
    assert "\n" not in text


def test_unknown_names_and_missing_files():
    with pytest.raises(PricingError, match=r"unknown pricing profile 'tpu-v9' \(built in: a100-80gb-rental, "):
        load_pricing("tpu-v9")
    with pytest.raises(PricingError, match=r"nope\.toml: cannot read pricing file"):
        load_pricing("/nonexistent/nope.toml")


def test_overrides():
    owned = load_pricing("h100-sxm-owned-5y")
    rented = apply_overrides(owned, gpu_hourly=1.8)
    assert rented.basis == "rental" and rented.rental.dollars_per_gpu_hour == 1.8 and rented.ownership is None
    assert not rented.energy.included_in_gpu_price  # the energy settings stay as they were
    cheaper = apply_overrides(owned, kwh=0.05, pue=1.1)
    assert (cheaper.energy.dollars_per_kwh, cheaper.energy.pue) == (0.05, 1.1)
    assert cheaper.ownership == owned.ownership
    assert apply_overrides(owned) == owned
    with pytest.raises(PricingError, match=r"^pricing override: field 'energy.dollars_per_kwh': must be >= 0"):
        apply_overrides(owned, kwh=-1)
