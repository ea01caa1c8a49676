#!/usr/bin/env python3
"""llama.cpp's side of scripts/bench_llm.sh, and the report of both sides.

  bench_llm.py llama  --model M.gguf --questions Q.json [--threads 2] [--instances 1]
      Runs llama.cpp (llama-cpp-python, in the benchmark's virtualenv) on the same questions as
      careloop's `bench_llm` example and prints one JSON object in the same shape.
  bench_llm.py report --ours A.json ... --llama B.json ... [--write BENCHMARKS.md] ...
      Medians over the rounds, a markdown table with the ratios; --write replaces the section
      between the bench_llm markers of the file (or appends it).

The llama.cpp side is the stricter baseline: it drives llama.cpp's own token loop
(`Llama.generate`, greedy: temp 0, top_k 1, no repeat penalty) on the prompt rendered by the
GGUF's chat template exactly as `create_chat_completion` renders it, without the per-token
detokenising and stop-string work of the OpenAI-style API.

Concurrency: llama-cpp-python has no batching server in process. `--instances 1` (default) is
what its own server does (one model, requests served one after another under a lock); with
`--instances N`, N separate Llama objects with threads/N threads each run in N Python threads
(llama_decode releases the GIL) and take the questions from a shared queue.
"""

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time

BEGIN = "<!-- bench_llm:begin (written by scripts/bench_llm.sh; edit outside the markers) -->"
END = "<!-- bench_llm:end -->"


def peak_rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def run_llama(args):
    from llama_cpp import Llama, llama_cpp as low
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    q = json.load(open(args.questions))
    threads_each = max(1, args.threads // args.instances)

    def load(threads):
        return Llama(
            model_path=args.model,
            n_ctx=2048,
            n_threads=threads,
            n_threads_batch=threads,
            seed=0,
            verbose=False,
        )

    t_load = time.perf_counter()
    llm0 = load(args.threads)  # the single stream always gets all the threads
    load_s = time.perf_counter() - t_load
    eos_id = llm0.token_eos()
    bos_id = llm0.token_bos()
    formatter = Jinja2ChatFormatter(
        template=llm0.metadata["tokenizer.chat_template"],
        eos_token=llm0._model.token_get_text(eos_id) if eos_id != -1 else "",
        bos_token=llm0._model.token_get_text(bos_id) if bos_id != -1 else "",
        stop_token_ids=[eos_id],
    )

    def prompt_tokens(llm, question):
        messages = [
            {"role": "system", "content": q["system"]},
            {"role": "user", "content": question},
        ]
        rendered = formatter(messages=messages)
        return llm.tokenize(
            rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True
        )

    def ask(llm, question, max_tokens, start):
        tokens = prompt_tokens(llm, question)
        vocab = llm._model.vocab
        n = 0
        first = None
        for tok in llm.generate(
            tokens, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True
        ):
            now = time.perf_counter()
            if first is None:
                first = now - start
            # Counted like mistral.rs counts it: the end-of-generation token is a generated
            # token (it cost a forward pass).
            n += 1
            if low.llama_vocab_is_eog(vocab, tok) or n >= max_tokens:
                break
        done = time.perf_counter() - start
        return {
            "prompt_tokens": len(tokens),
            "completion_tokens": n,
            "ttft_s": first if first is not None else done,
            "total_s": done,
        }

    ask(llm0, q["questions"][0], 16, time.perf_counter())  # warm-up, not counted
    single = []
    for question in q["questions"]:
        single.append(ask(llm0, question, q["max_tokens"], time.perf_counter()))

    if args.instances == 1:
        models = [llm0]
    else:
        llm0.close()
        del llm0
        models = [load(threads_each) for _ in range(args.instances)]
        for m in models:
            ask(m, q["questions"][0], 16, time.perf_counter())  # warm-up, not counted

    work = queue.Queue()
    for i, question in enumerate(q["questions"][: args.concurrency]):
        work.put((i, question))
    results = [None] * args.concurrency
    start = time.perf_counter()

    def worker(llm):
        while True:
            try:
                i, question = work.get_nowait()
            except queue.Empty:
                return
            results[i] = ask(llm, question, q["max_tokens"], start)

    threads = [threading.Thread(target=worker, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall_s = time.perf_counter() - start

    import llama_cpp

    print(
        json.dumps(
            {
                "engine": f"llama.cpp (llama-cpp-python {llama_cpp.__version__})",
                "config": f"{args.instances} Llama instance(s) x {threads_each} thread(s)",
                "load_s": load_s,
                "single": single,
                "concurrent": results,
                "concurrent_wall_s": wall_s,
                "peak_rss_mib": peak_rss_mib(),
            }
        )
    )


def percentile(values, p):
    """Linear interpolation between closest ranks (numpy's default)."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def metrics(run):
    s, c = run["single"], run["concurrent"]
    decode_tokens = sum(max(r["completion_tokens"] - 1, 0) for r in s)
    decode_s = sum(r["total_s"] - r["ttft_s"] for r in s)
    return {
        "single_decode": decode_tokens / decode_s,
        "single_e2e": sum(r["completion_tokens"] for r in s) / sum(r["total_s"] for r in s),
        "aggregate": sum(r["completion_tokens"] for r in c) / run["concurrent_wall_s"],
        "ttft_single_p50": percentile([r["ttft_s"] for r in s], 50) * 1000,
        "ttft_single_p99": percentile([r["ttft_s"] for r in s], 99) * 1000,
        "ttft_conc_p50": percentile([r["ttft_s"] for r in c], 50) * 1000,
        "ttft_conc_p99": percentile([r["ttft_s"] for r in c], 99) * 1000,
        "peak_rss": run["peak_rss_mib"],
        "tokens_single": sum(r["completion_tokens"] for r in s),
        "tokens_conc": sum(r["completion_tokens"] for r in c),
        "prompt_tokens": sum(r["prompt_tokens"] for r in s),
    }


def median_metrics(runs):
    ms = [metrics(r) for r in runs]
    return {k: statistics.median(m[k] for m in ms) for k in ms[0]}, ms


ROWS = [
    # key, label, format, higher is better
    ("single_decode", "single stream: decode tokens/s (after the first token)", "{:.1f}", True),
    ("single_e2e", "single stream: end-to-end tokens/s (prompt included)", "{:.1f}", True),
    ("aggregate", "8 concurrent: aggregate tokens/s (wall clock, all 8)", "{:.1f}", True),
    ("ttft_single_p50", "time to first token, single stream, p50 (ms)", "{:.0f}", False),
    ("ttft_single_p99", "time to first token, single stream, p99 (ms)", "{:.0f}", False),
    ("ttft_conc_p50", "time to first token, 8 concurrent, p50 (ms)", "{:.0f}", False),
    ("ttft_conc_p99", "time to first token, 8 concurrent, p99 (ms)", "{:.0f}", False),
    ("peak_rss", "peak memory, VmHWM of the process (MiB)", "{:.0f}", False),
    ("prompt_tokens", "prompt tokens, 10 questions (same prompts?)", "{:.0f}", None),
    ("tokens_single", "completion tokens, single stream (10 answers)", "{:.0f}", None),
    ("tokens_conc", "completion tokens, 8 concurrent", "{:.0f}", None),
]


def git(*a):
    try:
        return subprocess.check_output(["git", *a], text=True, stderr=subprocess.DEVNULL).strip()
    except Exception:
        return "?"


def machine():
    model, cores = "?", os.cpu_count()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        flags = open("/proc/cpuinfo").read()
        simd = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni") if f" {f}" in flags]
        mem = int(open("/proc/meminfo").readline().split()[1]) / 1024 / 1024
    except Exception:
        simd, mem = [], float("nan")
    return f"{model}, {cores} cores, {mem:.0f} GiB, {'/'.join(simd) or 'no AVX2'}"


def report(args):
    ours_runs = [json.load(open(p)) for p in args.ours]
    llama_runs = [json.load(open(p)) for p in args.llama]
    ours, ours_all = median_metrics(ours_runs)
    llama, llama_all = median_metrics(llama_runs)
    q = json.load(open(args.questions))
    dirty = " (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else ""
    lines = [
        BEGIN,
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}; commit {git('rev-parse', '--short', 'HEAD')}{dirty}",
        f"- machine: {machine()}; load during the run: see the note below the table",
        f"- model: `{args.model}` for both; {len(q['questions'])} questions "
        f"(`scripts/bench_llm.questions.json`), system prompt + question, greedy, "
        f"max {q['max_tokens']} new tokens; median of {len(ours_runs)} rounds, "
        "each round runs careloop and then llama.cpp",
        f"- careloop: {ours_runs[0]['engine']}, {ours_runs[0]['config']}",
        f"- llama.cpp: {llama_runs[0]['engine']}, built from the source package here "
        f"(`GGML_NATIVE=ON`), {llama_runs[0]['config']}, 2 threads in all",
        f"- reproduce: `{args.command}`",
        "",
        "| metric | careloop | llama.cpp | careloop / llama.cpp |",
        "| --- | --- | --- | --- |",
    ]
    for key, label, fmt, higher in ROWS:
        a, b = ours[key], llama[key]
        ratio = f"{a / b:.2f}" if b else "-"
        if higher is None:
            ratio = "-"
        elif not higher:
            ratio += " (lower is better)"
        lines.append(f"| {label} | {fmt.format(a)} | {fmt.format(b)} | {ratio} |")
    lines.append("")
    per_round = ", ".join(
        f"{o['single_decode']:.1f}/{l['single_decode']:.1f} single, "
        f"{o['aggregate']:.1f}/{l['aggregate']:.1f} aggregate"
        for o, l in zip(ours_all, llama_all)
    )
    lines.append(f"Per round (careloop/llama.cpp tokens/s): {per_round}.")
    lines.append("")
    lines.append(END)
    section = "\n".join(lines)
    print(section)
    if args.write:
        text = open(args.write).read()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            text = head + section + tail
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
        open(args.write, "w").write(text)
        print(f"wrote {args.write}", file=sys.stderr)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    l = sub.add_parser("llama")
    l.add_argument("--model", required=True)
    l.add_argument("--questions", required=True)
    l.add_argument("--threads", type=int, default=2)
    l.add_argument("--instances", type=int, default=1)
    l.add_argument("--concurrency", type=int, default=8)
    r = sub.add_parser("report")
    r.add_argument("--ours", nargs="+", required=True)
    r.add_argument("--llama", nargs="+", required=True)
    r.add_argument("--questions", required=True)
    r.add_argument("--model", required=True)
    r.add_argument("--command", default="scripts/bench_llm.sh")
    r.add_argument("--write")
    args = p.parse_args()
    run_llama(args) if args.cmd == "llama" else report(args)


if __name__ == "__main__":
    main()
