import pytest

from mixcpt_core.config import ConfigError, from_dict, load_config
from mixcpt_core.training import BasePretrainConfig
from mixcpt_core.world import WorldConfig

from .conftest import ROOT


def test_shipped_yaml_is_the_default_config():
    assert load_config(BasePretrainConfig, ROOT / "configs" / "base-tiny.yaml") == BasePretrainConfig()


@pytest.mark.parametrize("data, message", [
    ({"lerning_rate": 0.1}, r"config: unknown key\(s\) \['lerning_rate'\]"),
    ({"max_steps": "ten"}, r"config: max_steps: expected int, got 'ten'"),
    ({"max_steps": 1.5}, r"config: max_steps: expected int"),
    ({"world": {"n_general": -5}}, r"config: world.n_general: must be an integer >= 4, got -5"),
    ({"world": {"colour": 1}}, r"config: world: unknown key\(s\) \['colour'\]"),
    ({"world": 3}, r"config: world: expected a mapping"),
    ({"learning_rate": -1e-3}, r"config: learning_rate: must be a finite number > 0, got -0.001"),
])
def test_bad_values_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(BasePretrainConfig, data)


def test_ints_are_accepted_for_floats_and_nested_dataclasses_are_built():
    cfg = from_dict(BasePretrainConfig, {"learning_rate": 1, "world": {"seed": 7}})
    assert cfg.learning_rate == 1.0 and isinstance(cfg.learning_rate, float)
    assert cfg.world == WorldConfig(seed=7)


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(BasePretrainConfig, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_steps: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(BasePretrainConfig, bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(BasePretrainConfig, listy)


def test_cache_key_tracks_what_the_checkpoint_depends_on():
    base = BasePretrainConfig()
    assert base.cache_key() == BasePretrainConfig(output_dir="elsewhere", eval_every=7).cache_key()
    assert base.cache_key() != BasePretrainConfig(world=WorldConfig(seed=1)).cache_key()
    assert base.cache_key() != BasePretrainConfig(learning_rate=1e-3).cache_key()


def test_cpt_config_nests_the_lssd_section():
    from mixcpt_core.cpt import CPTConfig

    cfg = load_config(CPTConfig, ROOT / "configs" / "cpt-tiny.yaml")
    assert (cfg.lssd.lam, cfg.lssd.tau, cfg.lssd.swap, cfg.lssd.teacher) == (0.5, 1.0, True, "frozen_copy")
    with pytest.raises(ConfigError, match=r"config: lssd.lam: must be a finite number in \[0, 1\], got 2.0"):
        from_dict(CPTConfig, {"base_model": "m", "mix": "x.yaml", "lssd": {"lam": 2}})
