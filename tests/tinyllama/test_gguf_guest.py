"""The guest's GGUF path (firmware/gguf, firmware/tinyllama/{gguf_model,gguf_forward,quant,bpe,chat}.c)
against the numpy twin (gguf_reference.py) and the twin tokenizer (bpe_tokenizer.py, built on
the `regex` module): synthetic models written with the `gguf` package, so nothing to download.
The twin is an independent numpy program; the guest must equal it bit for bit."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from gguf_support import boot_gguf  # noqa: E402
from unikernel_sim.tinyllama.bpe_tokenizer import ByteLevelBpe  # noqa: E402
from unikernel_sim.tinyllama.gguf_reference import GgufModel  # noqa: E402
from unikernel_sim.tinyllama.synthetic_gguf import GgufShape, write_gguf  # noqa: E402

SHAPES = {
    "q4_1-gqa-tied": GgufShape(),
    "q8_0-untied": GgufShape(weight_type="Q8_0", tied=False, heads=2, kv_heads=2),
    "head-dim-64": GgufShape(dim=128, heads=2, kv_heads=1, hidden=96),
    "f16-weights": GgufShape(weight_type="F16", embedding_type="F16", dim=96, hidden=160, heads=3, kv_heads=1),
    "f32-weights": GgufShape(weight_type="F32", embedding_type="F32", tied=False, dim=64, hidden=96),
}
MAX_RELATIVE_ERROR = 1e-3            # the bound; the guest meets it with 0


@pytest.fixture(scope="module", params=sorted(SHAPES))
def synthetic(request, unisim_firmware, tmp_path_factory):
    path = write_gguf(tmp_path_factory.mktemp("gguf") / f"{request.param}.gguf", SHAPES[request.param], seed=3)
    return path, boot_gguf(unisim_firmware, path)


@pytest.mark.parametrize("order", ["avx2", "blocks"])
def test_logits_equal_the_twin_at_every_position(synthetic, unisim_firmware, order):
    """Both dot-product orders (dot=avx2, the default, and dot=blocks), 40 positions."""
    path, guest = synthetic
    if order != "avx2":
        guest = boot_gguf(unisim_firmware, path, f"ctx=128 dot={order}")
    machine_state = guest.machine.snapshot()
    twin = GgufModel(str(path), context=128, order=order)
    tokens = np.random.default_rng(1).integers(0, guest.vocab, 40)
    try:
        for pos, token in enumerate(tokens):
            want, got = twin.forward(int(token), pos), guest.forward(int(token), pos)
            assert np.max(np.abs(got - want)) / np.max(np.abs(want)) <= MAX_RELATIVE_ERROR, pos
            assert np.array_equal(got, want), f"position {pos}: {np.sum(got != want)} logits differ"
    finally:
        guest.machine.restore(machine_state)


def test_every_layer_keys_and_values_equal_the_twin(synthetic, unisim_firmware):
    """Layer by layer: the K and V each layer caches (its projections of the residual stream
    the layers before it produced), float16 bit for bit the twin's, 24 positions."""
    from gguf_support import kv_caches

    path, guest = synthetic
    machine_state = guest.machine.snapshot()
    twin = GgufModel(str(path), context=128)
    c = twin.config
    tokens = np.random.default_rng(4).integers(0, guest.vocab, 24)
    try:
        for pos, token in enumerate(tokens):
            twin.forward(int(token), pos)
            guest.forward(int(token), pos)
        keys, values = kv_caches(guest, unisim_firmware, c.layers, len(tokens), c.kv_heads * c.head_dim, 128)
        for layer in range(c.layers):
            assert np.array_equal(keys[layer].view(np.uint16), twin.keys[layer, :len(tokens)].view(np.uint16)), layer
            assert np.array_equal(values[layer].view(np.uint16), twin.values[layer, :len(tokens)].view(np.uint16)), layer
    finally:
        guest.machine.restore(machine_state)


def test_a_batch_gives_the_logits_of_its_last_position(synthetic):
    """The prompt path: 37 positions as a batch of 32 then 5 (each matrix read once per
    batch) end in the logits the twin computes position by position."""
    path, guest = synthetic
    machine_state = guest.machine.snapshot()
    twin = GgufModel(str(path), context=128)
    tokens = [int(t) for t in np.random.default_rng(2).integers(0, guest.vocab, 37)]
    try:
        for pos, token in enumerate(tokens):
            want = twin.forward(token, pos)
        guest.forward_batch(tokens[:32], 0)
        got = guest.forward_batch(tokens[32:], 32)
        assert np.array_equal(got, want)
    finally:
        guest.machine.restore(machine_state)


def test_positions_past_the_context_are_refused(synthetic):
    _, guest = synthetic
    assert guest.machine.call("gguf_llama_forward_one", guest.model, 0, 128) == 0
    assert guest.machine.call("gguf_llama_forward_one", guest.model, guest.vocab, 0) == 0


TEXT = st.text(st.sampled_from(list("the cat is in a hat 's'll 42 7\n\t  !?.,-é😀日本")), max_size=40) | st.text(max_size=24)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXT)
def test_the_tokenizer_splits_and_merges_as_the_twin(synthetic, text):
    """Pre-tokenizer (digits alone, GPT-2's pattern with Unicode classes), merges by rank,
    and decoding back to the same bytes, on any text."""
    path, guest = synthetic
    twin = _twin_tokenizer(str(path))
    ids = guest.encode(text)
    assert ids == twin.encode(text)
    assert b"".join(guest.decode(token) for token in ids) == text.encode("utf-8")


_TOKENIZERS: dict[str, ByteLevelBpe] = {}


def _twin_tokenizer(path: str) -> ByteLevelBpe:
    if path not in _TOKENIZERS:
        _TOKENIZERS[path] = ByteLevelBpe.from_gguf(path)
    return _TOKENIZERS[path]


# ---- broken files: one line naming what and where, exit 9, never a fault ------------------

EXIT_MODEL_CREATION = 9


def _tensor_info_offset(data: bytes, name: str) -> int:
    """File offset of the u32 n_dims that follows tensor name's info (GGUF: u64 length, name)."""
    encoded = name.encode()
    at = data.index(len(encoded).to_bytes(8, "little") + encoded)
    return at + 8 + len(encoded)


def _patch_tensor(data: bytes, name: str, *, type_: int | None = None, offset: int | None = None) -> bytes:
    at = _tensor_info_offset(data, name)
    n_dims = int.from_bytes(data[at:at + 4], "little")
    type_at = at + 4 + 8 * n_dims
    out = bytearray(data)
    if type_ is not None:
        out[type_at:type_at + 4] = type_.to_bytes(4, "little")
    if offset is not None:
        out[type_at + 4:type_at + 12] = offset.to_bytes(8, "little")
    return bytes(out)


def _broken_cases(good: bytes) -> dict[str, tuple[bytes, str]]:
    metadata_cut = good.index(b"tokenizer.ggml.tokens") + 40
    return {
        "empty": (b"", "not a GGUF file"),
        "magic": (b"GGML" + good[4:], "not a GGUF file"),
        "header": (good[:20], "ends inside its 24-byte header"),
        "version": (good[:4] + (1).to_bytes(4, "little") + good[8:], "version 1 is not supported"),
        "metadata": (good[:metadata_cut], "the file ends inside the value of metadata key 'tokenizer.ggml.tokens'"),
        "data": (good[:len(good) - 1000], "data past the end of the file in tensor"),
        "offset": (_patch_tensor(good, "blk.0.ffn_up.weight", offset=1 << 40),
                   "data past the end of the file in tensor 'blk.0.ffn_up.weight'"),
        "unknown-type": (_patch_tensor(good, "blk.1.attn_k.weight", type_=99),
                         "type an unknown type (99) is not supported (F32, F16, Q4_1, Q8_0 are) in tensor "
                         "'blk.1.attn_k.weight'"),
        "q4_0": (_patch_tensor(good, "blk.0.attn_q.weight", type_=2),
                 "type Q4_0 (2) is not supported (F32, F16, Q4_1, Q8_0 are) in tensor 'blk.0.attn_q.weight'"),
        "missing": (good.replace(b"blk.1.ffn_gate.weight", b"blk.1.ffn_gaze.weight"),
                    "tensor 'blk.1.ffn_gate.weight' is missing"),
        "unaligned": (_patch_tensor(good, "output_norm.weight", offset=4), "data not aligned to general.alignment"),
        "architecture": (_patch_string_value(good, "general.architecture", b"gpt2x"),
                         "general.architecture is not 'llama'"),
        "tokenizer": (_patch_string_value(good, "tokenizer.ggml.model", b"spm!"),
                      "tokenizer.ggml.model is not 'gpt2'"),
        "no-chatml": (good.replace(b"<|im_start|>", b"<|im_stxrt|>"), "not a ChatML model"),
    }


def _patch_string_value(data: bytes, key: str, value: bytes) -> bytes:
    """The string value of metadata key replaced by one of the same length (GGUF: key
    string, u32 type 8, u64 length, bytes)."""
    encoded = key.encode()
    at = data.index(len(encoded).to_bytes(8, "little") + encoded) + 8 + len(encoded)
    assert int.from_bytes(data[at:at + 4], "little") == 8
    length = int.from_bytes(data[at + 4:at + 12], "little")
    assert length == len(value)
    return data[:at + 12] + value + data[at + 12 + length:]


BROKEN = sorted(_broken_cases(write_gguf(Path(__import__("tempfile").mkdtemp()) / "m.gguf").read_bytes()))


@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_file_fails_in_the_guest_with_one_line(unisim_firmware, tmp_path, case):
    from unikernel_sim.boot.loader import ModuleSpec
    from unikernel_sim.run import boot
    from unikernel_sim.stops import StopReason

    data, expected = _broken_cases(write_gguf(tmp_path / "good.gguf").read_bytes())[case]
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(data)
    (tmp_path / "user.txt").write_text("Hi")
    result = boot(unisim_firmware, modules=[ModuleSpec(str(broken), "model"), ModuleSpec(str(tmp_path / "user.txt"), "user")],
                  cmdline="job=chat", timeout=60)
    lines = [line for line in result.serial.splitlines() if line.startswith("chat:")]
    assert result.stop.reason == StopReason.GUEST_EXIT and result.exit_code == EXIT_MODEL_CREATION, result.stop.summary
    assert len(lines) == 1 and expected in lines[0], lines
    assert not result.machine.interrupts.received, "the guest took an exception"


@pytest.mark.slow
def test_a_tinyllama_1b_shaped_model_is_created_when_the_machine_holds_it(unisim_firmware, tmp_path):
    """TinyLlama-1.1B's shapes (22 layers, dim 2048, 32 heads, 4 KV heads, feed-forward
    5632; random Q4_1 weights, a 606 MB file): created in a 1 GiB machine (the firmware maps
    all of RAM), its first logits finite; in 512 MiB the host refuses the module in one line."""
    from unikernel_sim.cli import main
    from unikernel_sim.exit_codes import ExitCode
    from unikernel_sim.tinyllama.synthetic_gguf import TINYLLAMA_1B

    path = write_gguf(tmp_path / "tinyllama-1b.gguf", TINYLLAMA_1B)
    guest = boot_gguf(unisim_firmware, path, "ctx=64 dot=blocks", memory_mb=1024)
    logits = guest.forward(1, 0)
    assert logits.shape == (guest.vocab,) and np.isfinite(logits).all()
    assert main(["chat", "Hi", "--model", str(path), "--memory", "512"]) == ExitCode.NO_INPUT


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_damage_to_a_gguf_never_faults_the_guest(unisim_firmware, tmp_path, data):
    """Bytes overwritten anywhere in the header, metadata or tensor infos, or the file cut
    anywhere: the guest either runs the chat (the damage hit only values it tolerates) or
    ends with exit 9 and one "chat:" line; it never takes an exception."""
    from unikernel_sim.boot.loader import ModuleSpec
    from unikernel_sim.run import boot

    good = _GOOD.setdefault("bytes", write_gguf(tmp_path / "good.gguf").read_bytes())
    header_end = good.index(b"output_norm.weight") + 200                 # past the tensor infos
    damaged = bytearray(good)
    if data.draw(st.booleans(), label="cut"):
        damaged = damaged[:data.draw(st.integers(0, len(good) - 1), label="length")]
    else:
        for _ in range(data.draw(st.integers(1, 4), label="writes")):
            at = data.draw(st.integers(0, header_end), label="offset")
            damaged[at:at + 8] = data.draw(st.binary(min_size=1, max_size=8), label="bytes")
    path, question = tmp_path / "damaged.gguf", tmp_path / "user.txt"
    path.write_bytes(bytes(damaged))
    question.write_text("Hi")
    result = boot(unisim_firmware, modules=[ModuleSpec(str(path), "model"), ModuleSpec(str(question), "user")],
                  cmdline="job=chat max_tokens=2 ctx=64", timeout=60)
    assert not result.machine.interrupts.received, result.serial[-400:]
    assert result.exit_code in (0, EXIT_MODEL_CREATION), result.stop.summary
    if result.exit_code:
        assert len([line for line in result.serial.splitlines() if line.startswith("chat:")]) == 1


_GOOD: dict[str, bytes] = {}


@pytest.fixture(scope="module")
def one_synthetic(unisim_firmware, tmp_path_factory):
    return boot_gguf(unisim_firmware, write_gguf(tmp_path_factory.mktemp("one") / "m.gguf", GgufShape(), seed=3))


def test_keys_past_the_metadata_index_are_found(unisim_firmware, tmp_path):
    """200 entries before the model's own: the reader walks past its index of the first
    128 (gguf.h) and the model answers as the same model without them."""
    plain = boot_gguf(unisim_firmware, write_gguf(tmp_path / "plain.gguf", seed=3))
    padded = boot_gguf(unisim_firmware, write_gguf(tmp_path / "padded.gguf", seed=3, filler_keys=200))
    assert np.array_equal(padded.forward(5, 0), plain.forward(5, 0))
    assert padded.encode("the cat is in a hat") == plain.encode("the cat is in a hat")


def test_f16_conversions_are_ieee_round_to_nearest_even(one_synthetic):
    """Against numpy's float16: every one of the 65,536 halves as the guest's table widens
    it, and float32 -> float16 on edge values (ties, subnormals, the overflow threshold,
    infinities, NaN) and random ones."""
    from unikernel_sim.guest_call import F32

    machine = one_synthetic.machine
    table = np.frombuffer(machine.ram.read(machine.symbols.address_of("fp16_table"), 4 << 16), dtype="<f4")
    want = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
    assert np.array_equal(table, want, equal_nan=True)
    edges = [0.0, -0.0, 1.0, 65504.0, 65519.99, 65520.0, 1e9, float("inf"), -float("inf"), 2.0 ** -24,
             2.0 ** -25, 3 * 2.0 ** -26, 2.0 ** -14, 2.0 ** -14 - 2.0 ** -25, 1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11,
             -1.0 - 2.0 ** -11, 1e-8, -6.1e-5]
    values = np.concatenate([np.array(edges, dtype=np.float32),
                             np.random.default_rng(0).standard_normal(300).astype(np.float32) * 1000]).astype(np.float32)
    got = [machine.call("fp32_to_fp16", F32(float(v))) & 0xFFFF for v in values]
    with np.errstate(over="ignore"):                         # 1e9 and 65520 overflow to inf, as intended
        want_halves = [int(h) for h in values.astype(np.float16).view(np.uint16)]
    assert got == want_halves
    nan = machine.call("fp32_to_fp16", F32(float("nan"))) & 0xFFFF
    assert nan & 0x7C00 == 0x7C00 and nan & 0x3FF


def test_ggml_expf_equals_the_twins_across_its_range(one_synthetic):
    """The guest's ggml_v_expf against the numpy twin's (gguf_reference.ggml_expf), bit for
    bit, from underflow through the rescaled ranges to overflow; and within 2 ulp of exp."""
    from unikernel_sim.guest_call import F32
    from unikernel_sim.tinyllama.gguf_reference import ggml_expf

    rng = np.random.default_rng(7)
    x = np.concatenate([np.array([-104.0, -103.9, -88.0, -87.3, -20.0, -1e-7, 0.0, 1e-7, 0.5, 1.0, 20.0, 88.0, 88.37,
                                  88.4, 100.0], dtype=np.float32),
                        rng.uniform(-110, 95, 300).astype(np.float32), rng.uniform(-2, 2, 100).astype(np.float32)])
    got = np.array([one_synthetic.machine.call("ggml_expf", F32(float(v)), returns="float") for v in x],
                   dtype=np.float32)
    assert np.array_equal(got, ggml_expf(x))
    finite = (x > -87) & (x < 88)
    assert np.all(np.abs(got[finite] - np.exp(x[finite].astype(np.float64))) <= 2 * np.spacing(got[finite]))
