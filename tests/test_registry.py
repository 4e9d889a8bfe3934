import pytest

from gmxai_eval.errors import ConfigError, DuplicateNameError, UnknownNameError
from gmxai_eval.registry import Registry
from gmxai_eval.types import MethodCard
from gmxai_eval.utils import merge_config, rng_for

import torch


def test_register_create_list_and_card():
    reg = Registry("thing")

    @reg.register(name="alpha", card={"x": 1})
    def alpha(k=1):
        return ("alpha", k)

    @reg.register(name="alpine")
    def alpine():
        return "alpine"

    assert reg.create("alpha", k=3) == ("alpha", 3)
    assert reg.list() == ["alpha", "alpine"]
    assert reg.list("alp*") == ["alpha", "alpine"]
    assert reg.list("alph?") == ["alpha"]
    assert reg.card("alpha") == {"x": 1}
    assert "alpha" in reg and "beta" not in reg and len(reg) == 2


def test_duplicate_name_raises():
    reg = Registry("thing")
    reg.register(lambda: 1, name="a")
    with pytest.raises(DuplicateNameError, match="already registered"):
        reg.register(lambda: 2, name="a")
    reg.register(lambda: 3, name="a", override=True)
    assert reg.create("a") == 3


def test_unknown_name_lists_close_matches():
    reg = Registry("method")
    reg.register(lambda: 1, name="integrated_gradients")
    with pytest.raises(UnknownNameError, match="did you mean 'integrated_gradients'"):
        reg.get("integrated_gradient")


def test_card_read_from_class_attribute():
    reg = Registry("method")

    class M:
        card = MethodCard(name="m1", family="gradient", signed=True, paper="p")

    reg.register(M)
    assert reg.list() == ["m1"] and reg.card("m1").family == "gradient"
    with pytest.raises(TypeError):
        reg.card("m1").default_config["a"] = 1  # frozen mapping


def test_merge_config_rejects_unknown_keys():
    assert merge_config("x", {"a": 1, "b": 2}, {"b": 3}) == {"a": 1, "b": 3}
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['c'\]"):
        merge_config("x", {"a": 1}, {"c": 1})


def test_rng_for_is_keyed_not_positional():
    a = torch.rand(3, generator=rng_for(0, "img1"))
    b = torch.rand(3, generator=rng_for(0, "img1"))
    c = torch.rand(3, generator=rng_for(0, "img2"))
    d = torch.rand(3, generator=rng_for(1, "img1"))
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, d)


def test_atomic_writes_get_the_umask_mode_and_leave_nothing_on_failure(tmp_path):
    import os

    from gmxai_eval.utils import atomic_path, write_atomic

    old = os.umask(0o022)
    try:
        p = write_atomic(tmp_path / "a.txt", "x")
        assert p.read_text() == "x" and (p.stat().st_mode & 0o777) == 0o644
        try:
            with atomic_path(tmp_path / "b.bin") as tmp:
                tmp.write_bytes(b"half")
                raise RuntimeError("killed")
        except RuntimeError:
            pass
        assert sorted(f.name for f in tmp_path.iterdir()) == ["a.txt"]
    finally:
        os.umask(old)
