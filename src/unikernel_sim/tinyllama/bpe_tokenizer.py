"""The host twin of a GGUF model's GPT-2 byte-level BPE tokenizer (SmolLM2's `smollm`
pre-tokenizer): what llama.cpp computes, to check the guest's tokenizer against.

Encoding: special tokens (control tokens such as `<|im_start|>`) are cut out first when
asked for; each remaining span is pre-tokenized (the smollm rule: every digit alone,
then GPT-2's pattern), each piece's UTF-8 bytes are mapped to GPT-2's printable
characters, and adjacent symbols are merged by the lowest merge rank until none applies.
Decoding maps the characters back to bytes, so a multi-byte character split over two
tokens comes out whole once both are decoded together.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import regex

DIGITS = regex.compile(r"(\p{N})")
GPT2_PATTERN = regex.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+")
TOKEN_TYPE_CONTROL = 3                 # llama.cpp's LLAMA_TOKEN_TYPE_CONTROL
TOKEN_TYPE_USER_DEFINED = 4


@lru_cache(maxsize=1)
def byte_to_unicode() -> dict[int, str]:
    """GPT-2's map from bytes to printable characters (the printable Latin-1 bytes stand
    for themselves, the others for 256 and up, in order)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


@dataclass
class ByteLevelBpe:
    tokens: list[str]
    merges: list[str]
    token_types: list[int]
    bos: int
    eos: int

    def __post_init__(self) -> None:
        self.ids = {token: index for index, token in enumerate(self.tokens)}
        self.ranks = {tuple(merge.split(" ", 1)): rank for rank, merge in enumerate(self.merges)}
        self.specials = sorted((token for token, kind in zip(self.tokens, self.token_types)
                                if kind in (TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED)), key=len, reverse=True)
        self._special_pattern = regex.compile("(" + "|".join(regex.escape(s) for s in self.specials) + ")") \
            if self.specials else None
        self._unicode_to_byte = {char: byte for byte, char in byte_to_unicode().items()}

    @classmethod
    def from_gguf(cls, path: str) -> "ByteLevelBpe":
        from gguf import GGUFReader

        reader = GGUFReader(path)

        def strings(key: str) -> list[str]:
            field = reader.fields[key]
            return [bytes(field.parts[i]).decode("utf-8") for i in field.data]

        def integers(key: str) -> list[int]:
            field = reader.fields[key]
            return [int(field.parts[i][0]) for i in field.data]

        def scalar(key: str) -> int:
            return int(reader.fields[key].parts[-1][0])

        return cls(strings("tokenizer.ggml.tokens"), strings("tokenizer.ggml.merges"),
                   integers("tokenizer.ggml.token_type"), scalar("tokenizer.ggml.bos_token_id"),
                   scalar("tokenizer.ggml.eos_token_id"))

    # --- encoding -------------------------------------------------------------------------
    def encode(self, text: str, *, special: bool = False) -> list[int]:
        """Token ids of text (no BOS); special: `<|im_start|>` and the like are one token."""
        ids: list[int] = []
        spans = self._special_pattern.split(text) if special and self._special_pattern else [text]
        for index, span in enumerate(spans):
            if not span:
                continue
            if special and self._special_pattern and index % 2 == 1:
                ids.append(self.ids[span])
                continue
            for piece in self.pre_tokenize(span):
                ids.extend(self._bpe(piece))
        return ids

    def chatml(self, question: str, system: str | None = None) -> list[int]:
        """The ChatML prompt the guest's chat job builds (tinyllama/chat.c): each turn
        <|im_start|>{role}\n{text}<|im_end|>\n with the markers as their ids and the text
        tokenized as text, then <|im_start|>assistant\n."""
        start, end = self.ids["<|im_start|>"], self.ids["<|im_end|>"]
        ids: list[int] = []
        for role, text in ((("system", system),) if system is not None else ()) + (("user", question),):
            ids += [start] + self.encode(f"{role}\n{text}") + [end] + self.encode("\n")
        return ids + [start] + self.encode("assistant\n")

    @staticmethod
    def pre_tokenize(text: str) -> list[str]:
        """The smollm pre-tokenizer: each digit alone, then GPT-2's pattern on the rest."""
        pieces = []
        for part in DIGITS.split(text):
            if part:
                pieces.extend(GPT2_PATTERN.findall(part))
        return pieces

    def _bpe(self, piece: str) -> list[int]:
        mapping = byte_to_unicode()
        symbols = [mapping[byte] for byte in piece.encode("utf-8")]
        while len(symbols) > 1:
            best, where = None, -1
            for i in range(len(symbols) - 1):
                rank = self.ranks.get((symbols[i], symbols[i + 1]))
                if rank is not None and (best is None or rank < best):
                    best, where = rank, i
            if best is None:
                break
            symbols[where:where + 2] = [symbols[where] + symbols[where + 1]]
        return [self.ids[symbol] for symbol in symbols]

    # --- decoding ---------------------------------------------------------------------------
    def token_bytes(self, token: int) -> bytes:
        text = self.tokens[token]
        if self.token_types[token] in (TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED):
            return text.encode("utf-8")
        return bytes(self._unicode_to_byte[char] for char in text)

    def decode(self, ids: list[int]) -> bytes:
        return b"".join(self.token_bytes(token) for token in ids)
