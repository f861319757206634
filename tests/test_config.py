"""Config loading: shipped examples load; bad input fails naming field and value."""

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.config import KEY_BITS, ConfigError, is_prime, load_config, parse_config

from .conftest import EXAMPLES

BASE = {
    "geometry": {"stages": 2, "log2_slots": 6, "maglev_size": 251},
    "vip": [{"name": "a", "address": "10.0.0.1", "port": 80, "protocol": "tcp",
             "dips": [{"address": "10.1.0.1", "port": 80}, {"address": "10.1.0.2"}]}],
}


def with_change(path: list, value):
    d = copy.deepcopy(BASE)
    node = d
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return d


@pytest.mark.parametrize("name", ["default", "small", "large"])
def test_examples_load(name):
    cfg = load_config(EXAMPLES / f"{name}.toml")
    assert cfg.name == name
    assert cfg.vips


def test_large_example_geometry():
    cfg = load_config(EXAMPLES / "large.toml")
    assert cfg.geometry.slots == 1 << 16
    assert len(cfg.all_dips) == 1000


def test_default_dip_port_and_full_digest():
    cfg = parse_config(with_change(["geometry", "digest_bits"], "full"))
    assert cfg.geometry.digest_bits == KEY_BITS
    assert cfg.vips[0].dips[1].port == 80  # inherited from the VIP


@pytest.mark.parametrize(("path", "value", "match"), [
    (["geometry", "stages"], 9, r"geometry\.stages: 9 is above the maximum 8"),
    (["geometry", "stages"], 0, r"geometry\.stages: 0 is below"),
    (["geometry", "digest_bits"], 7, r"geometry\.digest_bits: 7 is below"),
    (["geometry", "digest_bits"], "half", r"geometry\.digest_bits: 'half'"),
    (["geometry", "maglev_size"], 100, r"geometry\.maglev_size: 100 is neither a prime"),
    (["geometry", "bogus"], 1, r"geometry\.bogus: unknown field"),
    (["geometry", "log2_slots"], True, r"geometry\.log2_slots: expected an integer, got True"),
    (["vip", 0, "protocol"], "sctp", r"vip\[0\]\.protocol: unknown protocol 'sctp'"),
    (["vip", 0, "address"], "10.0.0.256", r"vip\[0\]\.address: '10.0.0.256' is not a valid"),
    (["vip", 0, "port"], 70000, r"vip\[0\]\.port: 70000 is above"),
    (["vip", 0, "dips"], [], r"vip\[0\]\.dips: pool of VIP 'a' is empty"),
    (["vip", 0, "dips", 0, "weight"], 0, r"vip\[0\]\.dips\[0\]\.weight: 0 is below the min"),
    (["vip", 0, "dips", 0, "weight"], -3, r"weight: -3 is below"),
    (["vip", 0, "dips", 1, "address"], "10.1.0.1", r"duplicate DIP 10\.1\.0\.1:80"),
    (["salts", "digest"], 1 << 32, r"salts\.digest: 4294967296 is above"),
    (["vip"], [], r"vip: expected at least one"),
])
def test_bad_config_names_field_and_value(path, value, match):
    d = copy.deepcopy(BASE)
    if path[0] == "salts":
        d["salts"] = {}
    with pytest.raises(ConfigError, match=match):
        parse_config(with_change(path, value) if path[0] != "salts"
                     else {**d, "salts": {"digest": value}})


def test_duplicate_vip():
    d = copy.deepcopy(BASE)
    d["vip"].append(dict(d["vip"][0], name="b"))
    with pytest.raises(ConfigError, match=r"vip\[1\]: duplicate VIP 10\.0\.0\.1:80/tcp "
                                          r"\(already defined by 'a'\)"):
        parse_config(d)


def test_maglev_smaller_than_pool():
    d = with_change(["geometry", "maglev_size"], 2)
    d["vip"][0]["dips"].append({"address": "10.1.0.3"})
    with pytest.raises(ConfigError, match=r"maglev_size: 2 is smaller than the pool of VIP 'a'"):
        parse_config(d)


def test_too_few_pool_slots():
    d = copy.deepcopy(BASE)
    d["geometry"]["pool_slots"] = 1
    d["vip"].append(dict(d["vip"][0], name="b", port=81))
    with pytest.raises(ConfigError, match=r"geometry\.pool_slots: 1 cannot hold"):
        parse_config(d)


def test_load_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[geometry\nstages = 2")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_is_prime():
    primes = [n for n in range(60) if is_prime(n)]
    assert primes == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59]
    assert is_prime(65537) and not is_prime(65536) and is_prime(4093)


# Anything TOML can hold, in any place: the loader either accepts it or raises
# ConfigError -- never another exception.
toml_values = st.recursive(
    st.none().map(lambda _: 0) | st.booleans() | st.integers(-(1 << 40), 1 << 40)
    | st.text(max_size=12) | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(section=st.sampled_from(["geometry", "vip", "salts", "name", "extra"]),
       key=st.sampled_from(["stages", "maglev_size", "digest_bits", "address", "dips",
                            "port", "protocol", "weight", "stages_x"]),
       value=toml_values)
def test_garbage_gives_config_error(section, key, value):
    d = copy.deepcopy(BASE)
    if section == "vip":
        d["vip"][0][key] = value
    elif section in ("geometry", "salts"):
        d.setdefault(section, {})[key] = value
    else:
        d[section] = value
    try:
        parse_config(d)
    except ConfigError as e:
        assert str(e)


@settings(max_examples=100, deadline=None)
@given(doc=st.dictionaries(st.text(max_size=8), toml_values, max_size=4))
def test_garbage_documents(doc):
    try:
        parse_config(doc)
    except ConfigError:
        pass
