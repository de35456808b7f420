"""dlcore.config: loading get_config() files, typed overrides, value checks."""
from __future__ import annotations

import textwrap

import pytest

from dlcore import config as C
from dlcore.config import ConfigError


def base():
    return {
        "seed": 0,
        "experiment_note": None,
        "data": {"name": "mnist1d", "batch_size": 100, "shuffle": False, "fraction": 0.5},
        "model": {"hidden": (100, 100), "widths": [1.0, 2.0], "extra": None,
                  "sub": {"deep": 1}},
        "optim": {"learning_rate": 1e-3, "name": "adam"},
    }


# --- apply_overrides: parsing by the default's type ----------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("true", True), ("True", True), ("1", True), ("yes", True), ("on", True),
    ("false", False), ("FALSE", False), ("0", False), ("no", False), ("off", False),
])
def test_bool(text, expected):
    out = C.apply_overrides(base(), [f"data.shuffle={text}"])
    assert out["data"]["shuffle"] is expected


def test_bool_rejects_other_text():
    with pytest.raises(ConfigError, match="data.shuffle"):
        C.apply_overrides(base(), ["data.shuffle=maybe"])


def test_int_float_str():
    out = C.apply_overrides(base(), ["data.batch_size=32", "optim.learning_rate=3e-3",
                                     "optim.name=sgd", "data.fraction=1"])
    assert out["data"]["batch_size"] == 32 and type(out["data"]["batch_size"]) is int
    assert out["optim"]["learning_rate"] == pytest.approx(3e-3)
    assert type(out["optim"]["learning_rate"]) is float
    assert out["optim"]["name"] == "sgd"
    # an integer text for a float default becomes a float
    assert out["data"]["fraction"] == 1.0 and type(out["data"]["fraction"]) is float


def test_whitespace_is_stripped():
    out = C.apply_overrides(base(), [" data.batch_size = 7 "])
    assert out["data"]["batch_size"] == 7


def test_value_may_contain_equals_sign():
    out = C.apply_overrides(base(), ["optim.name=a=b"])
    assert out["optim"]["name"] == "a=b"


def test_original_is_not_mutated():
    cfg = base()
    C.apply_overrides(cfg, ["data.batch_size=1", "model.hidden=5"])
    assert cfg == base()


def test_later_override_wins():
    out = C.apply_overrides(base(), ["seed=1", "seed=2"])
    assert out["seed"] == 2


@pytest.mark.parametrize("text,expected", [
    ("64,64", (64, 64)), ("[32, 16]", (32, 16)), ("(8,)", (8,)), ("7", (7,)), ("()", ()),
])
def test_tuple(text, expected):
    out = C.apply_overrides(base(), [f"model.hidden={text}"])
    assert out["model"]["hidden"] == expected
    assert type(out["model"]["hidden"]) is tuple


def test_list_keeps_list_type_and_accepts_ints_for_floats():
    out = C.apply_overrides(base(), ["model.widths=1,2.5"])
    assert out["model"]["widths"] == [1, 2.5] and type(out["model"]["widths"]) is list


def test_tuple_rejects_wrong_element_type():
    with pytest.raises(ConfigError, match="model.hidden"):
        C.apply_overrides(base(), ["model.hidden=1.5,2"])
    with pytest.raises(ConfigError, match="model.hidden"):
        C.apply_overrides(base(), ["model.hidden=a b"])


@pytest.mark.parametrize("text,expected", [
    ("3", 3), ("0.5", 0.5), ("[1, 2]", [1, 2]), ("None", None), ("hello", "hello"),
])
def test_none_default_is_literal_or_text(text, expected):
    out = C.apply_overrides(base(), [f"model.extra={text}"])
    assert out["model"]["extra"] == expected
    assert type(out["model"]["extra"]) is type(expected)


def test_nested_key():
    out = C.apply_overrides(base(), ["model.sub.deep=9"])
    assert out["model"]["sub"]["deep"] == 9


# --- apply_overrides: errors ----------------------------------------------------------------------

def test_unknown_key_suggests_close_match():
    with pytest.raises(ConfigError) as e:
        C.apply_overrides(base(), ["optim.learning_rat=1"])
    msg = str(e.value)
    assert "unknown config key 'optim.learning_rat'" in msg
    assert "did you mean optim.learning_rate" in msg


def test_unknown_key_without_match_has_no_suggestion():
    with pytest.raises(ConfigError) as e:
        C.apply_overrides(base(), ["zzzzzz=1"])
    assert "unknown config key 'zzzzzz'" in str(e.value)
    assert "did you mean" not in str(e.value)


def test_setting_a_section_is_refused():
    with pytest.raises(ConfigError) as e:
        C.apply_overrides(base(), ["optim=3"])
    assert "'optim' is a section" in str(e.value)
    assert "optim.learning_rate" in str(e.value)


def test_setting_an_outer_section_of_nested_keys_is_refused():
    # 'model' only has nested leaves under 'model.sub', but is a section all the same
    with pytest.raises(ConfigError, match="'model' is a section"):
        C.apply_overrides({"model": {"sub": {"deep": 1}}}, ["model=3"])


@pytest.mark.parametrize("item", ["data.batch_size", "justtext", ""])
def test_malformed_override(item):
    with pytest.raises(ConfigError, match="key=value"):
        C.apply_overrides(base(), [item])


@pytest.mark.parametrize("item,key,kind", [
    ("data.batch_size=1.5", "data.batch_size", "integer"),
    ("data.batch_size=abc", "data.batch_size", "integer"),
    ("optim.learning_rate=fast", "optim.learning_rate", "number"),
    ("data.shuffle=2", "data.shuffle", "true or false"),
])
def test_parse_errors_name_the_key(item, key, kind):
    with pytest.raises(ConfigError) as e:
        C.apply_overrides(base(), [item])
    assert f"'{key}'" in str(e.value) and kind in str(e.value)


def test_config_error_is_value_error():
    assert issubclass(ConfigError, ValueError)


def test_flatten_and_get():
    flat = C.flatten(base())
    assert flat["model.sub.deep"] == 1 and flat["data.batch_size"] == 100
    assert "model" not in flat and "model.sub" not in flat
    assert C.get(base(), "model.sub.deep") == 1


# --- load / resolve / list_experiments ------------------------------------------------------------

def write(tmp_path, name, body):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def test_load_with_quick_parameter(tmp_path):
    path = write(tmp_path, "exp_quick.py", '''
        """An experiment."""
        def get_config(quick: bool = False):
            return {"loop": {"steps": 10 if quick else 1000}}
    ''')
    full = C.load(str(path))
    assert full["loop"]["steps"] == 1000
    assert full["experiment"] == "exp_quick"
    assert C.load(str(path), quick=True)["loop"]["steps"] == 10


def test_load_without_quick_parameter(tmp_path):
    path = write(tmp_path, "plain.py", '''
        def get_config():
            return {"a": 1, "experiment": "custom-name"}
    ''')
    cfg = C.load(str(path))
    # an explicit experiment name is kept; the file's folder is recorded (its modules, its paths)
    assert cfg == {"a": 1, "experiment": "custom-name", "config_dir": str(tmp_path)}
    with pytest.raises(ConfigError, match="quick"):
        C.load(str(path), quick=True)


def test_load_returns_a_copy(tmp_path):
    path = write(tmp_path, "shared.py", '''
        CFG = {"a": {"b": 1}}
        def get_config():
            return CFG
    ''')
    cfg = C.load(str(path))
    cfg["a"]["b"] = 2
    assert C.load(str(path))["a"]["b"] == 1


def test_load_missing_get_config(tmp_path):
    path = write(tmp_path, "nothing.py", "X = 1\n")
    with pytest.raises(ConfigError, match="no get_config"):
        C.load(str(path))


def test_load_syntax_error(tmp_path):
    path = write(tmp_path, "broken.py", "def get_config(:\n    return {}\n")
    with pytest.raises(ConfigError) as e:
        C.load(str(path))
    assert "broken.py" in str(e.value) and "SyntaxError" in str(e.value)


def test_load_import_error(tmp_path):
    path = write(tmp_path, "badimport.py", "import dlcore_no_such_module\n")
    with pytest.raises(ConfigError, match="ModuleNotFoundError"):
        C.load(str(path))


def test_load_non_dict(tmp_path):
    path = write(tmp_path, "listcfg.py", "def get_config():\n    return [1]\n")
    with pytest.raises(ConfigError, match="must return a dict"):
        C.load(str(path))


def test_resolve_unknown_experiment_suggests():
    with pytest.raises(ConfigError) as e:
        C.resolve("mnist1d/mpl")
    assert "unknown experiment 'mnist1d/mpl'" in str(e.value)
    assert "mnist1d/mlp" in str(e.value)


def test_resolve_known_name_and_path(tmp_path):
    name, path = C.resolve("mnist1d/mlp")
    assert name == "mnist1d/mlp" and path.is_file() and path.name == "mlp.py"
    p = write(tmp_path, "mine.py", "def get_config():\n    return {}\n")
    assert C.resolve(str(p)) == ("mine", p.resolve())


def test_list_experiments():
    listed = dict(C.list_experiments())
    assert "mnist1d/mlp" in listed and "mnist1d/logreg" in listed
    assert listed["mnist1d/mlp"].startswith("MNIST-1D MLP")
    names = [n for n, _ in C.list_experiments()]
    assert names == sorted(names)
    assert not any(n.rsplit("/", 1)[-1].startswith("_") for n in names)


def test_load_builtin_experiment_quick():
    full, quick = C.load("mnist1d/mlp"), C.load("mnist1d/mlp", quick=True)
    assert full["experiment"] == "mnist1d/mlp"
    assert quick["loop"]["steps"] < full["loop"]["steps"]


# --- check / one_of -------------------------------------------------------------------------------

def test_check():
    C.check(True, "a.b", "never shown")
    with pytest.raises(ConfigError, match=r"config key 'a.b': must be > 0"):
        C.check(False, "a.b", "must be > 0")


def test_one_of():
    assert C.one_of("relu", "model.activation", ["tanh", "relu"]) == "relu"
    with pytest.raises(ConfigError) as e:
        C.one_of("rleu", "model.activation", ["tanh", "relu"])
    msg = str(e.value)
    assert "'model.activation'" in msg and "relu, tanh" in msg and "'rleu'" in msg


def test_list_descriptions_are_whole_sentences():
    assert C.first_sentence("Adam (Kingma et al. 2015) trains\n  it, e.g. here. More.") == \
        "Adam (Kingma et al. 2015) trains it, e.g. here."
    assert C.first_sentence("No full stop\nacross lines\n\nSecond paragraph.") == \
        "No full stop across lines"


# --- completing a config from the code that reads it (dlcore.experiment) --------------------------

def test_complete_fills_every_section_from_its_code():
    from dlcore import experiment, loop, models
    cfg = experiment.complete({"algorithm": "supervised", "data": {"name": "digits"},
                               "model": {"name": "cnn", "channels": (8,), "kernel_sizes": (3,),
                                         "strides": (1,)}})
    assert set(cfg["model"]) == set(models.defaults("cnn")) and cfg["model"]["channels"] == (8,)
    assert cfg["loop"] == loop.defaults() and cfg["seed"] == 0
    assert cfg["data"]["test_fraction"] == 0.2 and "eval_batch_size" in cfg["supervised"]


@pytest.mark.parametrize("config, message", [
    ({"algorithm": "ppo", "data": {"name": "env"}, "model": {"dropout": 0.5}},
     "'model.dropout' is not read by this run's code.*model has: activation, hidden"),
    ({"algorithm": "supervised", "data": {"name": "digits"}, "meta": {"inner_lr": 0.1}},
     "section 'meta' is not read by algorithm 'supervised'"),
    ({"algorithm": "supervised", "data": {"name": "digits", "batch_sise": 3}},
     "did you mean 'data.batch_size'"),
    ({"algorithm": "supervised"}, "names no data source"),
    ({"data": {"name": "digits"}}, "names no algorithm"),
])
def test_complete_refuses_what_no_code_reads(config, message):
    from dlcore import experiment
    with pytest.raises(ConfigError, match=message):
        experiment.complete(config)


def test_a_name_switch_brings_its_sections_keys():
    """--set model.name=cnn on an MLP experiment: the CNN's keys, shared values kept."""
    from dlcore import experiment, models
    cfg = experiment.load("mnist1d/mlp", overrides=["model.channels=8,8", "model.name=cnn"])
    assert set(cfg["model"]) == set(models.defaults("cnn"))
    assert cfg["model"]["channels"] == (8, 8) and cfg["model"]["init"] == "torch"
    assert "hidden" not in cfg["model"]


def test_switching_the_algorithm_keeps_the_model_and_shared_keys():
    from dlcore import experiment
    cfg = experiment.load("glyphs/protonet", quick=True, overrides=["algorithm=maml"])
    assert cfg["model"]["name"] == "cnn" and cfg["model"]["channels"] == (32, 32, 32, 32)
    assert "embedding_dim" not in cfg["meta"] and cfg["meta"]["inner_steps"] == 1


def test_a_run_of_values_has_a_name_and_a_plain_record(tmp_path):
    import numpy as np
    from dlcore import experiment
    from dlcore.data.arrays import arrays
    cfg = experiment.complete({"algorithm": "supervised", "data": {"name": "digits"}})
    assert cfg["experiment"] == "run" and cfg["seed"] == 0
    data = arrays(np.zeros((10, 2), np.float32), np.zeros(10, np.int32), batch_size=5,
                  test_fraction=0.2)
    rec = experiment.record({"algorithm": "supervised", "data": {"name": data}, "x": (1, 2)})
    assert isinstance(rec["data"]["name"], str) and "not importable" in rec["data"]["name"]
    assert rec["x"] == [1, 2]


def test_a_path_given_on_the_command_line_is_read_from_where_it_was_typed(tmp_path, monkeypatch):
    from dlcore import experiment
    monkeypatch.chdir(tmp_path)
    cfg = experiment.load("mnist1d/logreg", overrides=["data.name=npz", "data.path=mine.npz"])
    assert cfg["data"]["path"] == str(tmp_path / "mine.npz")


def test_a_list_of_bare_words_for_a_key_without_a_default_is_a_list_of_strings():
    """`--set optim.freeze=[conv_0, dense_*]` as typed in a shell (which drops the quotes) means
    two patterns, not the one glob '[conv_0, dense_*]'; quoted lists, numbers and words as before."""
    from dlcore.config import parse_value
    assert parse_value("optim.freeze", "[conv_0, dense_*]", None) == ["conv_0", "dense_*"]
    assert parse_value("optim.freeze", '["conv_0"]', None) == ["conv_0"]
    assert parse_value("optim.freeze", "conv_*", None) == "conv_*"
    assert parse_value("x", "[1, 2]", None) == [1, 2]
    assert parse_value("x", "3e-4", None) == 3e-4
