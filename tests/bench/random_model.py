"""Build a random-weight Llama and a locally trained tokenizer, for ``transformers serve`` with no model hub.

A real server needs a real model to run real kernels; the weights need not mean anything. This writes a
Hugging Face model folder (config, bf16 safetensors, a byte-level BPE tokenizer trained here on generated words,
a chat template) that ``transformers serve DIR`` loads, so the HTTP-stack benchmarks can be run against a real
serving stack on a GPU box with no internet:

    python tests/bench/random_model.py /tmp/rmodel [--layers 16] [--hidden 2048]
    transformers serve /tmp/rmodel --host 127.0.0.1 --port 8000 &
    python tests/bench/client_agreement.py http://127.0.0.1:8000 --model /tmp/rmodel

Needs torch, transformers and tokenizers (on the device machine's image; not project dependencies).
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def words(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ren", "to", "sa", "vel", "qu", "ar", "is", "on", "ter", "ba", "ne", "ul"]
    return [" ".join("".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(12))
            for _ in range(n)]


def build(out: Path, layers: int, hidden: int, vocab: int) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.trainers import BpeTrainer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(vocab_size=vocab, special_tokens=["<s>", "</s>", "<pad>"],
                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(words(20_000), trainer)
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    hf_tok.chat_template = CHAT_TEMPLATE
    hf_tok.save_pretrained(out)
    config = LlamaConfig(
        vocab_size=len(hf_tok), hidden_size=hidden, intermediate_size=hidden * 11 // 4, num_hidden_layers=layers,
        num_attention_heads=hidden // 128, num_key_value_heads=max(1, hidden // 512), max_position_embeddings=8192,
        bos_token_id=hf_tok.bos_token_id, eos_token_id=hf_tok.eos_token_id, pad_token_id=hf_tok.pad_token_id,
        torch_dtype="bfloat16",
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    params = sum(p.numel() for p in model.parameters())
    print(f"{out}: random Llama, {layers} layers, hidden {hidden}, {params / 1e9:.2f} B parameters, "
          f"vocab {len(hf_tok)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--vocab", type=int, default=4096)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    build(args.out, args.layers, args.hidden, args.vocab)


if __name__ == "__main__":
    main()
