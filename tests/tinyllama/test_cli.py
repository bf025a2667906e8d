"""`unisim demo` and `unisim llama` from the command line."""
from __future__ import annotations

import tempfile

from tinyllama_support import CHECKPOINT_260K, TOKENIZER_512, needs_shared_data
from unikernel_sim.cli import main


def test_demo_agrees_with_the_reference_and_leaves_no_files(capfd, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code = main(["demo", "--synthetic"])
    out, _ = capfd.readouterr()
    assert code == 0
    assert "guest and numpy reference agree: yes" in out
    assert "host wall time" in out
    assert list(tmp_path.iterdir()) == []


@needs_shared_data
def test_llama_deterministic_runs_print_identical_text_and_speed(capfd):
    args = ["llama", "--model", str(CHECKPOINT_260K), "--tokenizer", str(TOKENIZER_512), "--steps", "12",
            "--temp", "1.0", "--seed", "7", "--deterministic"]
    outputs = []
    for _ in range(2):
        assert main(args) == 0
        out, err = capfd.readouterr()
        outputs.append(out)
        assert "tok/s above: virtual time" in err
    assert outputs[0] == outputs[1] and "tok/s" in outputs[0]


@needs_shared_data
def test_llama_runs_a_real_checkpoint(capfd):
    code = main(["llama", "--model", str(CHECKPOINT_260K), "--tokenizer", str(TOKENIZER_512),
                 "--prompt", "Once upon a time", "--steps", "24", "--temp", "0"])
    out, _ = capfd.readouterr()
    assert code == 0
    assert "Once upon a time, there was a little girl named Lily." in out


def test_llama_bad_inputs(capfd, tmp_path):
    assert main(["llama", "--model", str(tmp_path / "none.bin"), "--tokenizer", "x"]) == 66
    _, err = capfd.readouterr()
    assert err.strip().endswith("checkpoint not found; check the path")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a checkpoint at all, just words")
    assert main(["llama", "--model", str(junk), "--tokenizer", str(junk)]) == 68
    _, err = capfd.readouterr()
    assert "not a llama2.c checkpoint" in err and err.count("\n") == 1
    assert main(["llama", "--model", str(junk), "--tokenizer", str(junk), "--temp", "-1"]) == 64
    assert main(["llama", "--model", str(junk), "--tokenizer", str(junk), "--topp", "1.5"]) == 64
    assert main(["llama", "--model", str(junk), "--tokenizer", str(junk), "--steps", "1e3"]) == 64
