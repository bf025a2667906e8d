"""`unisim demo` and `unisim llama` from the command line."""
from __future__ import annotations

from tinyllama_support import CHECKPOINT_260K, TOKENIZER_512, needs_shared_data
from unikernel_sim.cli import main


def test_demo_agrees_with_the_reference(capfd):
    code = main(["demo"])
    out, _ = capfd.readouterr()
    assert code == 0
    assert "guest and numpy reference agree: yes" in out


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
