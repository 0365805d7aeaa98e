#!/opt/ref/bin/python
"""Writes the committed seed corpora under fuzz/corpus/<target>/seed-*.

Seeds are small valid inputs (and a few near-valid ones) from which the fuzzers mutate:
  gguf/          the synthetic GGUF fixture of crates/model (every metadata type and dtype) and a
                 micro LLaMA GGUF (hidden 8, 1 layer, 2 heads / 1 KV head, byte-level BPE, F32/F16)
  hf_folder/     config.json + NUL + model.safetensors of the same micro LLaMA (tied embeddings)
  model_config/  config.json files (defaults, GQA, llama3 / linear rope scaling)
  train_config/  run-config TOML (+ NUL + overrides)
  dataset/       one selector byte (0 .jsonl, 1 .json, 2 .csv) + the lines of every format

Run: /opt/ref/bin/python fuzz/make_corpus.py   (gguf 0.x from llama.cpp, safetensors, numpy)
"""
import json
import shutil
from pathlib import Path

import gguf
import numpy as np
import safetensors.numpy

ROOT = Path(__file__).resolve().parent
CORPUS = ROOT / "corpus"
FIXTURES = ROOT.parent / "crates" / "model" / "tests" / "fixtures"

HIDDEN, FFN, LAYERS, HEADS, KV, VOCAB = 8, 16, 1, 2, 1, 16
HEAD_DIM = HIDDEN // HEADS


def put(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(data if isinstance(data, bytes) else data.encode())


def micro_weights(rng):
    w = {"model.embed_tokens.weight": rng.standard_normal((VOCAB, HIDDEN)), "model.norm.weight": np.ones(HIDDEN)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        w[p + "self_attn.q_proj.weight"] = rng.standard_normal((HIDDEN, HIDDEN))
        w[p + "self_attn.k_proj.weight"] = rng.standard_normal((KV * HEAD_DIM, HIDDEN))
        w[p + "self_attn.v_proj.weight"] = rng.standard_normal((KV * HEAD_DIM, HIDDEN))
        w[p + "self_attn.o_proj.weight"] = rng.standard_normal((HIDDEN, HIDDEN))
        w[p + "mlp.gate_proj.weight"] = rng.standard_normal((FFN, HIDDEN))
        w[p + "mlp.up_proj.weight"] = rng.standard_normal((FFN, HIDDEN))
        w[p + "mlp.down_proj.weight"] = rng.standard_normal((HIDDEN, FFN))
        w[p + "input_layernorm.weight"] = np.ones(HIDDEN)
        w[p + "post_attention_layernorm.weight"] = np.ones(HIDDEN)
    return {k: v.astype(np.float32) for k, v in w.items()}


GGUF_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
}


def micro_gguf(weights, f16, tmp):
    path = tmp / "micro.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(LAYERS)
    w.add_context_length(32)
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_vocab_size(VOCAB)
    w.add_rope_dimension_count(HEAD_DIM)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    tokens = ["<s>", "</s>", "a", "b", "c", "d", "e", "Ġ", "Ġa", "ab", "cd", "de", "Ġab", "ca", "bc", "dd"]
    w.add_token_list(tokens)
    w.add_token_types([3, 3] + [1] * (len(tokens) - 2))
    w.add_token_merges(["Ġ a", "a b", "c d", "d e", "Ġa b"])
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)
    w.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    for name, x in weights.items():
        if name.startswith("model.layers."):
            i, rest = name[len("model.layers."):].split(".", 1)
            g = f"blk.{i}.{GGUF_NAMES[rest]}"
        else:
            g = GGUF_NAMES[name]
        data = x.astype(np.float16) if f16 and x.ndim == 2 else x
        w.add_tensor(g, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


MICRO_CONFIG = {
    "model_type": "llama", "hidden_act": "silu", "hidden_size": HIDDEN, "intermediate_size": FFN,
    "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": KV,
    "vocab_size": VOCAB, "tie_word_embeddings": True, "max_position_embeddings": 32,
    "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "torch_dtype": "float32",
}


def main():
    if CORPUS.exists():
        for p in CORPUS.glob("*/seed-*"):
            p.unlink()
    rng = np.random.default_rng(7)
    weights = micro_weights(rng)
    tmp = ROOT / "work"
    tmp.mkdir(exist_ok=True)

    # gguf
    put("gguf", "synthetic.gguf", (FIXTURES / "gguf" / "synthetic.gguf").read_bytes())
    put("gguf", "micro-f32.gguf", micro_gguf(weights, False, tmp))
    put("gguf", "micro-f16.gguf", micro_gguf(weights, True, tmp))

    # hf_folder: config + NUL + safetensors
    st = safetensors.numpy.save(weights)
    put("hf_folder", "micro", json.dumps(MICRO_CONFIG).encode() + b"\0" + st)
    put("hf_folder", "micro-default-config", st)

    # model_config
    put("model_config", "micro.json", json.dumps(MICRO_CONFIG))
    for case in ["tied_gqa", "llama3_headdim", "untied_linear"]:
        put("model_config", f"{case}.json", (FIXTURES / case / "config.json").read_bytes())
    put("model_config", "minimal.json", json.dumps({k: MICRO_CONFIG[k] for k in
        ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"]}))

    # train_config
    put("train_config", "empty.toml", "")
    put("train_config", "crosslore.toml", "method = \"crosslore\"\nrank = 8\nlearning_rate = 1e-3\n"
        "residual_ratio = 0.012\nupdate_interval = 200\nbatch_size = 4\ngrad_accum = 2\nmax_len = 256\n"
        "template = \"chatml\"\nlayerwise = true\n")
    put("train_config", "galore-overrides.toml", "method = \"galore\"\nrank = 64\n\0learning_rate=3e-4\n"
        "lr-scheduler=linear\nlayerwise=false\n")
    put("train_config", "lora.toml", "method = \"lora\"\nrank = 16\nlora_dropout = 0.05\nscale = 2.0\n"
        "weight_decay = 0.0\nmax_grad_norm = 1.0\nepochs = 3\nmax_steps = 0\nseed = 1\n")

    # dataset: selector byte + text
    data = ROOT.parent / "crates" / "data" / "tests" / "fixtures"
    put("dataset", "gsm8k", b"\0" + (data / "gsm8k.jsonl").read_bytes()[:1200])
    put("dataset", "mawps", b"\1" + (data / "mawps_flat.json").read_bytes()[:1200])
    put("dataset", "e2e-csv", b"\2" + (data / "e2e.csv").read_bytes()[:800])
    lines = {
        "e2e-nlg": '{"mr": "name: Blue Spice, eatType: coffee shop", "references": ["A.", "B."]}',
        "mathqa": '{"question": "q ?", "options": ["229", "270", "877", "266", "281"], "answer": "b", '
                  '"formula": "divide(90, 3)"}',
        "mathqa-release": '{"Problem": "p", "Rationale": "r", "options": "a ) 1 , b ) 2 , c ) 3 , d ) 4 , e ) 5",'
                          ' "correct": "b", "annotated_formula": "add(1, 1)"}',
        "cnn-dm": '{"article": "Doc.", "highlights": "h"}',
        "xsum": '{"document": "Doc.", "summary": "s"}',
        "alpaca": '{"instruction": "Add.", "input": "2 2", "output": "4"}',
        "prompt-response": '{"prompt": "2+2?", "response": "4", "system": "Math."}',
        "chat": '{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "u1"}, '
                '{"role": "assistant", "content": "a1"}]}',
    }
    for name, line in lines.items():
        put("dataset", name, b"\0" + (line + "\n" + line + "\n").encode())
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
