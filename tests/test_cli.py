"""The ``jrl`` command line: expected errors are one sentence on stderr and exit status 2 (no traceback);
``--dry-run`` resolves a recipe without loading a model. Every test runs ``cli.main`` in-process."""

import json

import nbformat
import pytest

from jrl_core import cli, config, experiment


def run(argv, capsys):
    """``(exit status, stdout, stderr)`` of ``jrl argv``."""
    try:
        status = cli.main(argv)
    except SystemExit as e:
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(autouse=True)
def no_training(monkeypatch):
    """A test that reached training would be a bug: fail it instead of training."""
    def refuse(*args, **kwargs):
        raise AssertionError("run_experiment reached from a CLI test")

    monkeypatch.setattr(experiment, "run_experiment", refuse)


def assert_one_line_error(status, err, *needles):
    assert status == 2
    assert err.startswith("jrl ") and ": error: " in err and err.count("\n") == 1 and "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.mark.parametrize(("argv", "needles"), [
    (["--set", "grpo.steps"], ["grpo.steps", "KEY=VALUE"]),
    (["--set", "grpo=5"], ["grpo=5", "expected a mapping"]),
    (["--set", "grpo.steps=abc"], ["grpo.steps='abc'", "int > 0"]),
    (["--set", "trainer.foo=1"], ["trainer.foo", "known:"]),
    (["--set", "size=0x0"], ["size='0x0'"]),
    (["--set", "seed=1.5", "--dry-run"], ["seed=1.5"]),
])
def test_a_bad_override_is_one_line_and_exit_2(argv, needles, capsys):
    status, out, err = run(["train", "--recipe", "nano/rq1_2x1_pair", *argv], capsys)
    assert_one_line_error(status, err, *needles)
    assert out == ""


def test_recipe_files_and_folders_that_cannot_be_read_are_one_line(tmp_path, capsys):
    assert_one_line_error(*run(["train", "--recipe", "nano/nope"], capsys)[::2], "nano/nope", "known recipes")
    assert_one_line_error(*run(["train", "--recipe", str(tmp_path / "gone" / "x.yaml")], capsys)[::2],
                          "does not exist")
    assert_one_line_error(*run(["train", "--recipe", str(config.RECIPES_DIR / "nano")], capsys)[::2],
                          "is a folder", "nano/rq1_2x1_pair")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\ngrpo: {steps: 5\nseed: 1\n")
    assert_one_line_error(*run(["train", "--recipe", str(broken)], capsys)[::2], str(broken), "line 3",
                          "malformed YAML")


def test_dry_run_prints_the_resolved_settings_without_loading_a_model(capsys):
    status, out, err = run(["train", "--recipe", "nano/grpo_d_counting", "--set", "name=no", "--set", "grpo.steps=3",
                            "--dry-run"], capsys)
    assert status == 0, err
    plan = json.loads(out)
    assert plan["experiment"]["name"] == "no"
    assert plan["grpo"]["steps"] == 3 and plan["grpo"]["beta"] == plan["kl"]["beta_min"] > 0
    assert plan["curriculum"] == {"sizes": ["2x1"], "boundaries": []} and plan["nano"]["hidden_size"] > 0


def test_a_hub_model_without_network_fails_fast_with_the_fix(monkeypatch, capsys):
    monkeypatch.setattr(config, "_can_connect", lambda host, port, timeout: (False, "test: no network"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    status, _, err = run(["train", "--recipe", "paper/qwen2.5-vl-3b_2x1_pair_nothink",
                          "--set", "model=nobody-jrl-test/no-such-model"], capsys)
    assert_one_line_error(status, err, "model='nobody-jrl-test/no-such-model'", "unreachable", "HF_HUB_OFFLINE=1",
                          "local folder")


def test_an_unexpected_error_keeps_its_traceback(monkeypatch):
    def boom(*args, **kwargs):
        raise ValueError("boom inside training")

    monkeypatch.setattr(experiment, "run_experiment", boom)
    with pytest.raises(ValueError, match="boom inside training"):
        cli.main(["train", "--recipe", "nano/rq1_2x1_pair"])


def test_jrl_run_rejects_an_unknown_notebook_parameter_before_executing(tmp_path, monkeypatch, capsys):
    import jrl_core.study as study

    monkeypatch.setattr(study, "execute_run", lambda *a, **k: pytest.fail("the notebook was executed"))
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    nb.cells = [nbformat.v4.new_code_cell("seed = 0\nsteps = 10\nrun_dir = None\n",
                                          metadata={"tags": ["parameters"]})]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    status, _, err = run(["run", str(path), "-p", "seeed", "3", "--reports", str(tmp_path / "reports")], capsys)
    assert_one_line_error(status, err, "seeed", "known: seed, steps", "did you mean 'seed'")
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize(("setting", "needles"), [
    ("pretrain_token_noise=2", ["nano.pretrain_token_noise=2", "[0, 1]"]),
    ("pretrain_token_noise_vocab=digits", ["pretrain_token_noise_vocab", "'words'"]),
    ("image_size=100", ["nano.image_size=100", "image_size=84"]),
])
def test_nano_build_refuses_a_bad_value_before_building(setting, needles, capsys, monkeypatch, tmp_path):
    """`jrl nano build --set` checks every value as a recipe's nano section is checked: a bad one is a one-line error
    (exit 2) before any build step runs, not a failure after the 15-minute vision stage."""
    from jrl_core import nano

    monkeypatch.setattr(nano, "build_base", lambda *a, **k: pytest.fail("build_base reached with a bad value"))
    status, _, err = run(["nano", "build", "--set", setting, "--out", str(tmp_path / "b")], capsys)
    assert_one_line_error(status, err, *needles)
    assert not (tmp_path / "b").exists()
