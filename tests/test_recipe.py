import pytest

from edge_sdk.errors import ConfigError
from edge_sdk.recipe import Recipe, list_recipes, load_recipe


@pytest.mark.parametrize("name", list_recipes())
def test_shipped_recipes_load(name):
    r = load_recipe(name)
    assert r.objectives and r.name


def test_recipe_round_trips():
    r = load_recipe("teacher")
    d = r.to_dict()
    objectives = {n: {"weight": c["weight"], "start_epoch": c["start_epoch"], **c["params"]} for n, c in d.pop("objectives").items()}
    assert Recipe.from_dict({**d, "objectives": objectives}) == r


@pytest.mark.parametrize("toml, match", [
    ("[train]\nepochz = 3\n[objectives.infonce]\n", "unknown key 'epochz'"),
    ("bogus = 1\n[objectives.infonce]\n", "unknown key 'bogus'"),
    ("[objectives.magic]\n", "unknown objective 'magic'"),
    ("[objectives.infonce]\ntemprature = 0.1\n", r"unknown key\(s\) \['temprature'\]"),
    ("[train]\nepochs = 'ten'\n[objectives.infonce]\n", "epochs = 'ten' is not a int"),
    ("[objectives.sync]\n", "sync objective needs clips"),
    ("[data]\nkind = 'movies'\n[objectives.infonce]\n", "kind = 'movies'"),
    ("[model]\nspec = 'avnet_t.avdigits'\n", "no objectives"),
    ("[train\n", "not valid TOML"),
    ("[train]\nprecision = 'fp8'\n[objectives.infonce]\n", "precision = 'fp8'"),
])
def test_bad_recipes_name_the_problem(tmp_path, toml, match):
    p = tmp_path / "r.toml"
    p.write_text(toml)
    with pytest.raises(ConfigError, match=match) as e:
        load_recipe(p)
    assert str(p) in str(e.value)


def test_missing_recipe_lists_shipped_ones():
    with pytest.raises(ConfigError, match="teacher"):
        load_recipe("no_such_recipe")
