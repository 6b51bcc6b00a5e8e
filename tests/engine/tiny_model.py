"""Build a tiny Llama model and its tokenizer locally; nothing is downloaded.

The tokenizer is a byte-level BPE trained on this repository's own text; the weights
are random but seeded, so every build gives the same model. ``vocab_size`` may exceed
the tokenizer's vocabulary, as it does for real models (Qwen2's 151,936 rows).

The ``qwen0.5b`` shape is a model of Qwen2.5-0.5B's size (hidden 896, 24 layers,
vocabulary 151,936, about 0.5B parameters), random too: for throughput benchmarks,
where a 2-layer model's step is too short to say anything about a real one's.

Usage: ``python tiny_model.py OUT_DIR [--vocab-size N] [--shape tiny|qwen0.5b]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

TOKENIZER_VOCAB = 512
#: Model shapes: LlamaConfig fields by name.
SHAPES: dict[str, dict[str, int]] = {
    "tiny": {
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
    },
    # Qwen2.5-0.5B's dimensions (its attention biases aside).
    "qwen0.5b": {
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "vocab_size": 151_936,
    },
}
SPECIAL_TOKENS = ["<s>", "</s>", "<unk>"]
# A plain role-prefixed template: enough for /v1/chat/completions to work.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ message['role'] }}: {{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
)


def _training_text(repo: Path) -> list[str]:
    """Lines of the repository's Markdown and Python files."""
    lines: list[str] = []
    for pattern in ("**/*.md", "packages/**/*.py"):
        for path in sorted(repo.glob(pattern)):
            lines.extend(path.read_text(encoding="utf-8", errors="replace").splitlines())
    return [line for line in lines if line.strip()]


def build(
    out_dir: Path, vocab_size: int = TOKENIZER_VOCAB, seed: int = 1234, shape: str = "tiny"
) -> Path:
    """Write the model to ``out_dir`` (skipped if it is already there) and return it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    if (out_dir / "config.json").exists():
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(_training_text(Path(__file__).resolve().parents[2]), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        chat_template=CHAT_TEMPLATE,
    )
    fast.save_pretrained(out_dir)

    torch.manual_seed(seed)
    dimensions = {"vocab_size": vocab_size, **SHAPES[shape]}
    dimensions["vocab_size"] = max(dimensions["vocab_size"], len(fast))
    config = LlamaConfig(
        **dimensions,
        max_position_embeddings=2048,
        # The tiny model's is wider than the usual 0.02 so that its next-token
        # distribution is not flat; the large one keeps Qwen's.
        initializer_range=0.2 if shape == "tiny" else 0.02,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        # Qwen2.5-0.5B shares its embedding and output matrices.
        tie_word_embeddings=shape != "tiny",
        torch_dtype="float32",
    )
    LlamaForCausalLM(config).save_pretrained(out_dir)
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--vocab-size", type=int, default=TOKENIZER_VOCAB)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    args = parser.parse_args()
    print(build(args.out_dir, args.vocab_size, shape=args.shape))


if __name__ == "__main__":
    main()
