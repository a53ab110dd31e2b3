"""Subword tokenizer for labels and comments: BPE trained by the `tokenizers` library.

One vocabulary serves both sides so the decoder can copy object names it sees in the prompt (the
model ties input and output embeddings). Spaces are kept as a word-start marker so decoding restores
the original spacing of Korean text exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

PAD_TOKEN = "<pad>"
EOS_TOKEN = "</s>"
UNK_TOKEN = "<unk>"
SEP_TOKEN = "<sep>"
SPECIAL_TOKENS = [PAD_TOKEN, EOS_TOKEN, UNK_TOKEN, SEP_TOKEN]
TOKENIZER_FILE = "tokenizer.json"


class CommentTokenizer:
    """Encodes a label list into an encoder prompt and comments into decoder targets."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        ids: dict[str, int] = {}
        for token in SPECIAL_TOKENS:
            token_id = tokenizer.token_to_id(token)
            if token_id is None:
                raise ValueError(f"tokenizer lacks the special token {token}")
            ids[token] = int(token_id)
        self.pad_id = ids[PAD_TOKEN]
        self.eos_id = ids[EOS_TOKEN]
        self.unk_id = ids[UNK_TOKEN]
        self.sep_id = ids[SEP_TOKEN]

    @classmethod
    def train(
        cls, texts: Iterable[str], *, vocab_size: int, slot_tokens: Sequence[str] = ()
    ) -> CommentTokenizer:
        """`slot_tokens` (object slots, `slots.SLOT_TOKENS`) become single tokens that decoding keeps;
        the word-start marker is then only prepended to a text's first part, so "<obj1>이" decodes
        without a space between the slot and its particle."""
        tokenizer = Tokenizer(models.BPE(unk_token=UNK_TOKEN))
        # NFC keeps Hangul as precomposed syllables even when input arrives decomposed (macOS, some IMEs).
        tokenizer.normalizer = normalizers.NFC()
        scheme = "first" if slot_tokens else "always"
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme)
        tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=scheme)
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=[*SPECIAL_TOKENS, *slot_tokens], show_progress=False
        )
        tokenizer.train_from_iterator(texts, trainer=trainer)
        return cls(tokenizer)

    @classmethod
    def load(cls, model_dir: str | Path) -> CommentTokenizer:
        return cls(Tokenizer.from_file(str(Path(model_dir) / TOKENIZER_FILE)))

    def save(self, model_dir: str | Path) -> None:
        self._tokenizer.save(str(Path(model_dir) / TOKENIZER_FILE))

    def token_id(self, token: str) -> int | None:
        """The id of a whole token (a special or slot token), None when the vocabulary lacks it."""
        token_id = self._tokenizer.token_to_id(token)
        return None if token_id is None else int(token_id)

    @property
    def vocab_size(self) -> int:
        return int(self._tokenizer.get_vocab_size())

    def encode_labels(self, labels: Sequence[str], *, max_length: int) -> list[int]:
        """`label <sep> label <sep> ... </s>`; labels are encoded one by one so no label text can
        forge a separator."""
        ids: list[int] = []
        for index, label in enumerate(labels):
            if index:
                ids.append(self.sep_id)
            ids.extend(self._tokenizer.encode(label, add_special_tokens=False).ids)
        return [*ids[: max_length - 1], self.eos_id]

    def encode_comment(self, text: str, *, max_length: int) -> list[int]:
        ids = self._tokenizer.encode(text, add_special_tokens=False).ids
        return [*ids[: max_length - 1], self.eos_id]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids` without padding, separators and end marks; slot tokens stay in the text."""
        dropped = (self.pad_id, self.eos_id, self.sep_id, self.unk_id)
        kept = [token_id for token_id in ids if token_id not in dropped]
        return str(self._tokenizer.decode(kept, skip_special_tokens=False)).strip()
