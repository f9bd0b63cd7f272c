"""Tiny random models the real-server tests generate (no downloads): a Hugging Face Llama for
vLLM and a GGUF Llama for llama.cpp. Random weights: the text is nonsense, the serving is real.

The Llama needs torch + transformers, which live in the vLLM environment, so it is made by
running this file with that environment's Python: `PYTHON tiny_models.py llama DIR`.
The GGUF needs only `gguf` + numpy (the test venv): `make_tiny_gguf(path)`.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

WORDS = ("the a of and to in is it you that he was for on are with as his they be at one "
         "have this from or had by hot word but what some we can out other were all there "
         "when up use your how said an each she which do their time if will way").split()
CHAT_TEMPLATE = ("{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n"
                 "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}")


def write_tiny_llama(directory: Path) -> None:
    """Hidden 128, 2 heads (head_dim 64: vLLM's CPU attention rejects 16), 2 layers, a
    WordLevel tokenizer of ~50 words with a chat template. Runs in the vLLM environment."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, ":": 3, "\n": 4}
    for word in [*WORDS, "user", "assistant", "system"]:
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>",
                                        eos_token="</s>", unk_token="<unk>")
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=128, intermediate_size=256,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         head_dim=64, max_position_embeddings=512, bos_token_id=1,
                         eos_token_id=2, tie_word_embeddings=False, torch_dtype="float32")
    model = LlamaForCausalLM(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)


def make_tiny_llama(directory: Path, python: str) -> Path:
    """Create the Llama in `directory` with `python` (an interpreter with torch/transformers)."""
    if not (directory / "config.json").exists():
        subprocess.run([python, __file__, "llama", str(directory)], check=True, timeout=600)
    return directory


def make_tiny_gguf(path: Path) -> Path:
    """A ~0.5 MB GGUF Llama: embedding 64, 2 blocks, 4 heads, feed-forward 128, a vocabulary of
    <unk>, <s>, </s>, the 256 byte tokens and some word pieces, tokenizer model "llama"."""
    import gguf
    import numpy as np

    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tokens += ["\u2581" + word for word in WORDS] + list("abcdefghijklmnopqrstuvwxyz")
    types = ([gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
             + [gguf.TokenType.BYTE] * 256
             + [gguf.TokenType.NORMAL] * (len(tokens) - 259))
    embed, blocks, heads, ff, vocab = 64, 2, 4, 128, len(tokens)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("hpcbench-tiny")
    writer.add_context_length(512)
    writer.add_embedding_length(embed)
    writer.add_block_count(blocks)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads)
    writer.add_rope_dimension_count(embed // heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * 3 + [-1000.0] * 256 + [-float(i) for i in range(vocab - 259)])
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_chat_template(CHAT_TEMPLATE)
    rng = np.random.default_rng(0)

    def tensor(name: str, *shape: int) -> None:
        values = rng.normal(0.0, 0.02, size=shape).astype(np.float32)
        writer.add_tensor(name, values if "norm" not in name else np.ones(shape, np.float32))

    tensor("token_embd.weight", vocab, embed)
    tensor("output_norm.weight", embed)
    # Peaked logits (weights ~50) make sampling pick the argmax, so a prompt always gets the
    # same reply; </s> always scores 0, far below the argmax, so no reply ends before max_tokens.
    output = rng.normal(0.0, 50.0, size=(vocab, embed)).astype(np.float32)
    output[2] = 0.0
    writer.add_tensor("output.weight", output)
    for block in range(blocks):
        prefix = f"blk.{block}."
        tensor(prefix + "attn_norm.weight", embed)
        for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
            tensor(prefix + part + ".weight", embed, embed)
        tensor(prefix + "ffn_norm.weight", embed)
        tensor(prefix + "ffn_gate.weight", ff, embed)
        tensor(prefix + "ffn_up.weight", ff, embed)
        tensor(prefix + "ffn_down.weight", embed, ff)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


if __name__ == "__main__":
    if sys.argv[1:2] == ["llama"]:
        write_tiny_llama(Path(sys.argv[2]))
    else:
        sys.exit("usage: tiny_models.py llama DIR")
