
import pytest

from charrnn.config import CHOICES, FIELDS, ConfigError, TrainConfig, make_config, parse_key_values


def test_defaults_are_valid():
    assert make_config() == TrainConfig()


def test_cli_strings_are_coerced_to_field_types():
    cfg = make_config(parse_key_values(["hidden_size=64", "lr=1e-3", "residual=true", "cell=lstm"]))
    assert (cfg.hidden_size, cfg.lr, cfg.residual, cfg.cell) == (64, 1e-3, True, "lstm")


@pytest.mark.parametrize("overrides, needle", [
    ({"hiden_size": 3}, "unknown key 'hiden_size'"),
    ({"cell": "transformer"}, "cell='transformer'"),
    ({"hidden_size": "big"}, "hidden_size='big': expected an integer"),
    ({"hidden_size": 0}, "hidden_size=0: out of range"),
    ({"hidden_size": -4}, "hidden_size=-4"),
    ({"dataset_fraction": 0}, "dataset_fraction=0.0"),
    ({"dataset_fraction": 1.5}, "dataset_fraction=1.5"),
    ({"layers": 9}, "layers=9"),
    ({"residual": "maybe"}, "residual='maybe'"),
    ({"task": "text", "path": "/no/such/file.txt"}, "path='/no/such/file.txt': file not found"),
    ({"task": "text"}, "task=text needs path=FILE"),
    ({"cell": "vanilla", "input_combine": "add", "backend": "fused"},
     "backend=fused runs only concat; valid with backend=fused: concat (backends that run add: loop,"),
    ({"cell": "vanilla", "input_combine": "add", "backend": "loop_bptt"}, "backend=loop_bptt runs only concat"),
    ({"cell": "vanilla", "activation": "identity", "backend": "fused"},
     "activation='identity': backend=fused supports only tanh, relu"),
    ({"arith_ops": "+/"}, "arith_ops='+/'"),
    ({"cell": "vanilla", "input_combine": "add", "backend": "fused_nocudnn"},
     "backend=fused_nocudnn runs only concat"),
    ({"backend": "loop_cudagraph", "device": "cpu"},
     "backend='loop_cudagraph': CUDA graphs need a CUDA device; device is cpu; valid on cpu: fused, loop,"),
    ({"backend": "cudnn"}, "backend='cudnn': unknown value; valid choices: auto, fused, fused_nocudnn, loop,"),
])
def test_bad_values_raise_one_line_naming_key_and_value(overrides, needle):
    with pytest.raises(ConfigError) as err:
        make_config(overrides)
    message = str(err.value)
    assert needle in message
    assert "\n" not in message


def test_unknown_value_lists_valid_choices():
    with pytest.raises(ConfigError, match="valid choices: " + ", ".join(CHOICES["hidden_init"])):
        make_config({"hidden_init": "ones"})


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match="valid keys: " + ", ".join(FIELDS[:3])):
        make_config({"nope": 1})


def test_key_value_without_equals_is_rejected():
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_key_values(["cell"])


def test_identity_hash_is_stable_and_sensitive():
    a, b = make_config({"seed": 1}), make_config({"seed": 1})
    assert a.identity_hash() == b.identity_hash()
    assert a.identity_hash() != make_config({"seed": 2}).identity_hash()


def test_run_name_reads_well():
    assert make_config({"cell": "gru", "hidden_size": 256, "layers": 2}).run_name() == "gru-h256-l2-s0"


def test_registry_is_the_source_of_every_name_list():
    from charrnn import registry
    assert CHOICES["backend"] == tuple(registry.BACKENDS)
    assert CHOICES["cell"] == tuple(registry.CELLS)
    assert CHOICES["task"] == tuple(registry.TASKS)
    assert set(registry.final_metrics()) == {f"final_{m}" for m in registry.METRICS if registry.METRICS[m].final}


def test_metric_direction_comes_from_the_registry_not_the_name():
    from charrnn import registry
    assert registry.higher_is_better("final_tokens_per_s") and not registry.higher_is_better("val_loss")
    with pytest.raises(KeyError):
        registry.higher_is_better("made_up_metric")
