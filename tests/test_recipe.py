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


@pytest.mark.parametrize(
    "toml, match",
    [
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
        ("[train]\nepochs = 0\n[objectives.infonce]\n", r"\[train\] epochs = 0 is out of range -- fix: use epochs >= 1"),
        ("[train]\nepochs = -1\n[objectives.infonce]\n", "epochs = -1 is out of range"),
        ("[train]\nlr = -1.0\n[objectives.infonce]\n", "lr = -1.0 is out of range -- fix: use a finite lr > 0"),
        ("[train]\nlr = 0.0\n[objectives.infonce]\n", "lr = 0.0 is out of range"),
        ("[train]\nlr = nan\n[objectives.infonce]\n", "lr = nan is out of range"),
        ("[train]\nweight_decay = inf\n[objectives.infonce]\n", "weight_decay = inf is out of range"),
        ("[train]\nbatch_size = 1\n[objectives.infonce]\n", "batch_size = 1 is out of range -- fix: use batch_size >= 2"),
        ("[train]\nlog_every = 0\n[objectives.infonce]\n", "log_every = 0 is out of range"),
        ("[train]\ncheckpoint_every = 0\n[objectives.infonce]\n", "checkpoint_every = 0 is out of range"),
        ("[train]\nseed = -3\n[objectives.infonce]\n", "seed = -3 is out of range"),
        ("[data]\nscenes_per_epoch = 0\n[objectives.infonce]\n", r"\[data\] scenes_per_epoch = 0 is out of range"),
        ("[data]\nscenes_per_epoch = 10\n[objectives.infonce]\n", r"scenes_per_epoch = 10 is below \[train\] batch_size = 64"),
        ("[data]\nmask_audio = 'yes'\n[objectives.infonce]\n", "mask_audio = 'yes' is not a bool"),
        ("[data]\nmask_audio = 1\n[objectives.infonce]\n", "mask_audio = 1 is not a bool"),
        ("[data]\nk_mix = [true]\n[objectives.infonce]\n", r"k_mix = \[True\] is not a list\[int\]"),
        ("[objectives.infonce]\nweight = -1.0\n", r"\[objectives.infonce\] weight = -1.0 is out of range"),
        ("[objectives.infonce]\nstart_epoch = -1\n", "start_epoch = -1 is out of range"),
    ],
)
def test_bad_recipes_name_the_problem(tmp_path, toml, match):
    p = tmp_path / "r.toml"
    p.write_text(toml)
    with pytest.raises(ConfigError, match=match) as e:
        load_recipe(p)
    assert str(p) in str(e.value)


def test_missing_recipe_lists_shipped_ones():
    with pytest.raises(ConfigError, match="teacher"):
        load_recipe("no_such_recipe")


def test_overrides_after_loading_are_checked_by_validate():
    r = load_recipe("teacher")
    r.train.epochs = 0  # what a command-line override does
    with pytest.raises(ConfigError, match="epochs = 0 is out of range"):
        r.validate("teacher")
