"""llama2.c's tokenizer file and its BPE (run.c: build_tokenizer, encode, decode).

File: int32 max_token_length, then for each of vocab_size tokens: float32
score, int32 length, the piece's bytes. Encoding: BOS (1) first if asked; a
" " dummy-prefix token before non-empty text; each UTF-8 character looked up
as a piece, else its bytes as byte-fallback tokens (byte + 3); then repeatedly
merge the adjacent pair whose concatenation is a piece with the highest score
(the first such pair on a tie). Decoding: a piece after BOS loses its leading
space; "<0xXX>" pieces are that raw byte.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass

BOS = 1
EOS = 2
BYTE_FALLBACK_OFFSET = 3
RAW_BYTE = re.compile(rb"^<0x([0-9A-Fa-f]{2})>$")


@dataclass
class Tokenizer:
    pieces: list[bytes]
    scores: list[float]
    max_token_length: int

    @classmethod
    def from_bytes(cls, data: bytes, vocab_size: int) -> "Tokenizer":
        if len(data) < 4:
            raise ValueError("tokenizer file is shorter than its header")
        (max_length,) = struct.unpack_from("<i", data, 0)
        offset = 4
        pieces, scores = [], []
        for index in range(vocab_size):
            if offset + 8 > len(data):
                raise ValueError(f"tokenizer file ends at token {index} of {vocab_size}")
            score, length = struct.unpack_from("<fi", data, offset)
            offset += 8
            if length < 0 or offset + length > len(data):
                raise ValueError(f"tokenizer token {index} has a bad length {length}")
            pieces.append(bytes(data[offset:offset + length]))
            scores.append(score)
            offset += length
        return cls(pieces, scores, max_length)

    def to_bytes(self) -> bytes:
        parts = [struct.pack("<i", self.max_token_length)]
        for piece, score in zip(self.pieces, self.scores):
            parts.append(struct.pack("<fi", score, len(piece)) + piece)
        return b"".join(parts)

    def __post_init__(self) -> None:
        self._lookup = {piece: index for index, piece in reversed(list(enumerate(self.pieces)))}

    def encode(self, text: str, bos: bool = True, eos: bool = False) -> list[int]:
        tokens = [BOS] if bos else []
        data = text.encode("utf-8")
        if data:
            tokens.append(self._lookup[b" "])
        for char in text:
            encoded = char.encode("utf-8")
            if encoded in self._lookup:
                tokens.append(self._lookup[encoded])
            else:
                tokens.extend(byte + BYTE_FALLBACK_OFFSET for byte in encoded)
        start = 1 if bos else 0
        while True:
            best_score, best_index, best_id = -1e10, -1, -1
            for i in range(start, len(tokens) - 1):
                merged = self.pieces[tokens[i]] + self.pieces[tokens[i + 1]]
                candidate = self._lookup.get(merged)
                if candidate is not None and self.scores[candidate] > best_score:
                    best_score, best_index, best_id = self.scores[candidate], i, candidate
            if best_index < 0:
                break
            tokens[best_index:best_index + 2] = [best_id]
        if eos:
            tokens.append(EOS)
        return tokens

    def decode_piece(self, previous: int, token: int) -> bytes:
        piece = self.pieces[token]
        if previous == BOS and piece.startswith(b" "):
            piece = piece[1:]
        raw = RAW_BYTE.match(piece)
        return bytes([int(raw.group(1), 16)]) if raw else piece

    def decode(self, tokens: list[int]) -> bytes:
        out = bytearray()
        previous = BOS
        for token in tokens:
            if token == BOS:
                previous = token
                continue
            out += self.decode_piece(previous, token)
            previous = token
        return bytes(out)
