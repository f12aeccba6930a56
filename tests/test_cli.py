import json
import subprocess
import sys

import pytest

from edge_sdk.bundle import BUNDLES
from edge_sdk.toolchain.cli import EXAMPLES, main

DEMO = str(BUNDLES / "avnet_s-demo")


def _run(*args):
    return subprocess.run([sys.executable, "-m", "edge_sdk", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("command", sorted(EXAMPLES))
def test_every_command_has_help_with_an_example(command):
    out = _run(command, "--help")
    assert out.returncode == 0 and "example:" in out.stdout and EXAMPLES[command] in out.stdout


def test_info_json_lists_every_registered_spec_with_params_and_macs():
    out = _run("info", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)["models"]}
    assert {"avnet_t.avdigits", "avnet_s.avdigits", "avnet_xs.avdigits"} <= set(rows)
    t = rows["avnet_t.avdigits"]
    assert t["role"] == "teacher" and t["params"] > 1e6 and t["macs"] > 1e8
    assert t["outputs"]["image_map"] == [1, 128, 12, 12]
    folds = json.loads(out.stdout)["folds"]  # the shipped speaker folds, what `eval --folds` reads
    assert all({"avsync_s.avdigits", "avsync_t.avdigits"} <= set(models) for models in folds.values()), folds
    assert set(folds) <= {"jackson", "nicolas", "yweweler"}


def test_doctor_reports_backends_and_devices():
    out = _run("doctor", "--json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["backends"]["onnxruntime-cpu"] is True and "microphones" in r and "cameras" in r


@pytest.mark.parametrize(
    "args, match",
    [
        (["eval", "no/such/model.safetensors"], "does not exist"),
        (["eval", "not_a_model"], "no model file or shipped model"),
        (["pretrain", "--recipe", "nope", "--out", "x"], "recipe nope not found"),
        (["eval", "x.safetensors", "--fsdd", "a"], "go together"),
        (["distill", "--student", "student_m", "--out", "x"], "unknown model spec 'student_m'"),
        (["quantize", "avnet_t.avdigits", "--calib", "no/such/dir", "--out", "x"], "calibration folder no/such/dir does not exist"),
        (["quantize", "avnet_t.avdigits", "--target", "coreml", "--calib", "d", "--out", "x"], "unknown target(s) ['coreml']"),
        (["eval", "."], "has no manifest.json"),
        (["eval", "avnet_s.avdigits", "--backend", "onnxruntime"], "is a checkpoint, which runs in PyTorch FP32 only"),
        (["eval", "avnet_s.avdigits", "--json", "no/such/dir/x.json"], "cannot write --json no/such/dir/x.json: folder no/such/dir does not exist"),
        (["run", "--bundle", "b", "--video", "v", "--stats", "no/such/dir/s.json"], "cannot write --stats"),
        (["eval", "avnet_s.avdigits", "--json", "."], "--json . is a folder"),
        (["export", "student_xs", "--format", "executorch", "--precision", "fp16", "--out", "OUT"], "no export path for executorch at fp16"),
        (["export", "student_xs", "--format", "onnx", "--precision", "int8", "--out", "OUT"], "INT8 needs calibration data"),
        (["quantize", "student_xs", "--target", "xnnpack", "--method", "entropy", "--calib", "d", "--out", "OUT"], "has no entropy calibrator"),
        (["bench", DEMO, "--only", "onnx/int8"], "--only onnx/int8: not in"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(args, match, tmp_path, capsys):
    # In this process (a fresh one per case cost 3 s of importing torch each): main() turns the
    # error into one line on stderr and exit status 2; an escaping exception fails the test.
    code = main([str(tmp_path / "out") if a == "OUT" else a for a in args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.parametrize(
    "args, match",
    [
        (["eval", "x", "--k", "20"], "argument --k: 20 is out of range (1..10)"),
        (["eval", "x", "--scenes", "0"], "argument --scenes: 0 is out of range (>= 1)"),
        (["run", "--bundle", "b", "--video", "v", "--mjpeg", "99999"], "argument --mjpeg: 99999 is out of range (1..65535)"),
        (["run", "--bundle", "b", "--video", "v", "--max-seconds", "-1"], "argument --max-seconds: -1 is out of range"),
        (["quantize", "m", "--calib", "c", "--out", "o", "--budget", "nan"], "argument --budget: nan is out of range"),
        (["calib", "--out", "o", "--n", "many"], "argument --n: 'many' is not an integer"),
        (["calib", "--out", "o", "--n", "8"], "argument --n: 8 is out of range (>= 32)"),
    ],
)
def test_numbers_out_of_range_are_refused_by_the_parser(args, match):
    out = _run(*args)
    assert out.returncode == 2 and match in out.stderr and "Traceback" not in out.stderr


def test_checkpoint_of_another_spec_is_refused(tmp_path):
    from edge_sdk.checkpoint import save_model
    from edge_sdk.models.avnet import AVNet
    from edge_sdk.spec import get_spec

    path = save_model(tmp_path / "m.safetensors", AVNet(get_spec("avnet_xs.avdigits")))
    side = json.loads(path.with_suffix(".json").read_text())
    side["spec"] = get_spec("avnet_s.avdigits").to_dict()
    path.with_suffix(".json").write_text(json.dumps(side))
    out = _run("eval", str(path), "--synthetic")
    assert out.returncode == 2 and "does not match spec avnet_s.avdigits" in out.stderr
    path.write_bytes(path.read_bytes()[:100])
    out = _run("eval", str(path), "--synthetic")
    assert out.returncode == 2 and "not a readable safetensors" in out.stderr


def test_run_with_a_device_profile_falls_back_when_the_bundle_lacks_its_choice(tmp_path):
    out = _run(
        "run",
        "--bundle",
        DEMO,
        "--video",
        "synthetic://av-digits?seconds=1&fps=5",
        "--headless",
        "--quiet",
        "--device",
        "jetson-orin",
        "--stats",
        str(tmp_path / "s.json"),
    )
    assert out.returncode == 0, out.stderr[-1500:]
    assert "has no tensorrt int8 model (asked with --device jetson-orin): using the best one it has" in out.stderr
    stats = json.loads((tmp_path / "s.json").read_text())  # the terminal gets one line, the file the statistics
    assert stats["frames_out"] == 5 and out.stdout.strip().splitlines() == [out.stdout.strip()] and "statistics in" in out.stdout


def test_an_unreadable_file_is_one_line_naming_it(monkeypatch, capsys):
    # A bundle written by another user with 0600 files: every read of it hashes every file.
    # (Run as root here, a real chmod would not stop the read, so the read itself is made to fail.)
    from edge_sdk.toolchain import cli

    def refused(path):
        raise PermissionError(13, "Permission denied", f"{path}/model.safetensors")

    monkeypatch.setattr("edge_sdk.bundle.read_bundle", refused)
    assert cli.main(["info", DEMO]) == 2
    err = capsys.readouterr().err
    assert f"cannot access {DEMO}/model.safetensors: permission denied" in err and "read access" in err


def test_the_status_line_is_whole_lines_when_stderr_is_not_a_terminal():
    out = _run("run", "--bundle", DEMO, "--video", "synthetic://av-digits?seconds=2&realtime=1", "--headless")
    assert out.returncode == 0, out.stderr[-1000:]
    assert "\r" not in out.stderr and any(" fps  in " in line and "faults" in line for line in out.stderr.splitlines())


def test_precision_flag_overrides_the_recipe_and_is_recorded(tmp_path):
    recipe = tmp_path / "bf16.toml"
    recipe.write_text(
        'name = "bf16"\n[model]\nspec = "avnet_xs.avdigits"\n[data]\nk = 1\nscenes_per_epoch = 8\n'
        '[train]\nepochs = 1\nbatch_size = 8\nwarmup_steps = 1\nprecision = "bf16"\n[objectives.infonce]\n'
    )
    out = _run("pretrain", "--recipe", str(recipe), "--precision", "fp32", "--synthetic", "--quiet", "--out", str(tmp_path / "r"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads((tmp_path / "r" / "recipe.json").read_text())["train"]["precision"] == "fp32"
    refused = _run("pretrain", "--recipe", str(recipe), "--precision", "fp8", "--out", str(tmp_path / "s"))
    assert refused.returncode == 2 and "invalid choice: 'fp8'" in refused.stderr


def test_an_unknown_model_name_is_refused_before_torch_loads():
    code = "import sys\nfrom edge_sdk.toolchain.cli import main\nrc = main(['eval', 'not_a_model'])\nprint(rc, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["2", "False"], out.stderr[-2000:]
    assert "no model file or shipped model named 'not_a_model'" in out.stderr
