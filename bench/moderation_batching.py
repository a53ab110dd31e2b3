"""The CPU batching policy of the moderation models, measured: ONNX chunk size per model, threads per
pool, and which model is the critical path.

    .venv/bin/python bench/moderation_batching.py [--images 64] [--rounds 3] [--json]

Sessions are made by Lumi's own ``onnx_session`` (the bot's options) and fed ready tensors of the package
photos (decoded and preprocessed as Lumi does), so only the models' own time is measured:

- chunk size: each model alone, ``--images`` inputs fed 1, 2, 4, 8, 16 or 32 per ONNX call, with the
  bot's threads per model (``default_threads``: half the cores);
- chunk size together: both models at once on a thread each, as in the bot, with the bot's threads,
  NudeNet at Lumi's batch size (``BatchConfig.max_batch_size``) and open_nsfw at each chunk size;
- threads per pool: both models at once, for each pair of intra-op pool sizes, in Lumi's batch size;
  each model's busy share of the wall time says which one is the critical path.

Every round runs every configuration, in a different order each round; figures are the median and range
over rounds. A configuration beats the current default clearly only when it wins in every round: its
worst round beats the default's best. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from typing import Any

from moderation_parts import MODELS, BareModel, corpus, model_tensors, rotated, run_together, spread

from inference.registry import BatchConfig
from inference.threads import default_threads, usable_cores

CHUNKS = (1, 2, 4, 8, 16, 32)


def thread_pairs(cores: int) -> list[tuple[int, int]]:
    """(NudeNet threads, open_nsfw threads) worth trying: one, half and all the cores for each."""
    sizes = sorted({1, max(1, cores // 2), cores})
    return [(nudenet, open_nsfw) for nudenet in sizes for open_nsfw in sizes]


def measure(count: int, rounds: int) -> dict[str, Any]:
    tensors = model_tensors(corpus(count))
    cores, default = usable_cores(), default_threads()
    chunk = BatchConfig().max_batch_size
    pairs = thread_pairs(cores)
    sessions = {
        (name, threads): BareModel.load(name, threads)
        for name in MODELS
        for threads in sorted({threads for pair in pairs for threads in pair} | {default})
    }
    for model in sessions.values():
        model.run(tensors[model.name][:chunk], chunk)  # warm-up: buffers and kernels chosen
    chunk_rates: dict[str, dict[int, list[float]]] = {name: {size: [] for size in CHUNKS} for name in MODELS}
    pair_rates: dict[tuple[int, int], list[float]] = {pair: [] for pair in pairs}
    busy_share: dict[tuple[int, int], dict[str, list[float]]] = {
        pair: {n: [] for n in MODELS} for pair in pairs
    }
    together_rates: dict[int, list[float]] = {size: [] for size in CHUNKS}
    configs = (
        [f"chunk {name} {size}" for name in MODELS for size in CHUNKS]
        + [f"together {size}" for size in CHUNKS]
        + [f"pair {p}" for p in pairs]
    )
    for round_index in range(rounds):
        for config in rotated(configs, round_index):
            if config.startswith("chunk"):
                _, name, size = config.split()
                model = sessions[(name, default)]
                chunk_rates[name][int(size)].append(count / model.run(tensors[name], int(size)))
            elif config.startswith("together"):
                size = int(config.split()[1])
                models = [sessions[(name, default)] for name in MODELS]
                wall, _ = run_together(models, tensors, {"nudenet": chunk, "open_nsfw": size})
                together_rates[size].append(count / wall)
            else:
                pair = pairs[[f"pair {p}" for p in pairs].index(config)]
                models = [sessions[(name, threads)] for name, threads in zip(MODELS, pair, strict=True)]
                wall, busy = run_together(models, tensors, chunk)
                pair_rates[pair].append(count / wall)
                for name in MODELS:
                    busy_share[pair][name].append(busy[name] / wall)
        print(f"round {round_index + 1} of {rounds} done", file=sys.stderr)
    return {
        "images": count,
        "rounds": rounds,
        "cores": cores,
        "default_threads": default,
        "batch_size": chunk,
        "chunk_images_per_s": {
            name: {str(size): [round(v, 2) for v in rates] for size, rates in by_size.items()}
            for name, by_size in chunk_rates.items()
        },
        "together_open_nsfw_chunk_images_per_s": {
            str(size): [round(v, 2) for v in rates] for size, rates in together_rates.items()
        },
        "threads_images_per_s": {
            f"{a}+{b}": [round(v, 2) for v in rates] for (a, b), rates in pair_rates.items()
        },
        "threads_busy_share": {
            f"{a}+{b}": {name: [round(v, 3) for v in shares] for name, shares in by_model.items()}
            for (a, b), by_model in busy_share.items()
        },
    }


def clearly_better(candidate: list[float], current: list[float]) -> bool:
    """Better in every round: the candidate's worst round beats the current setting's best."""
    return bool(candidate) and min(candidate) > max(current)


def best_setting(what: str, rounds: dict[str, list[float]], current: str, *, keep: str) -> str:
    """`what` the fastest setting is, by median images per second, against the current one."""
    best = max(rounds, key=lambda setting: statistics.median(rounds[setting]))
    gain = statistics.median(rounds[best]) / statistics.median(rounds[current])
    clear = best != current and clearly_better(rounds[best], rounds[current])
    return f"{what} {best} ({gain:.2f}x the current {current}); " + (
        "clearly better in every round" if clear else f"no clear gain: keep the current {keep}"
    )


def verdicts(report: dict[str, Any]) -> list[str]:
    current_chunk = str(report["batch_size"])
    lines = [
        best_setting(f"{name}: best chunk", by_size, current_chunk, keep="chunk")
        for name, by_size in report["chunk_images_per_s"].items()
    ]
    together = report["together_open_nsfw_chunk_images_per_s"]
    lines.append(
        best_setting("both models at once: best open_nsfw chunk", together, current_chunk, keep="chunk")
    )
    pairs = report["threads_images_per_s"]
    current_pair = f"{report['default_threads']}+{report['default_threads']}"
    lines.append(best_setting("threads (NudeNet+open_nsfw): best", pairs, current_pair, keep="threads"))
    shares = report["threads_busy_share"][current_pair]
    critical = max(shares, key=lambda name: statistics.median(shares[name]))
    lines.append(
        f"critical path at {current_pair}: {critical} (busy "
        + ", ".join(f"{name} {statistics.median(values):.0%}" for name, values in shares.items())
        + " of the wall time)"
    )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = measure(args.images, max(1, args.rounds))
    report["verdicts"] = verdicts(report)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"{report['images']} tensors per model, {report['rounds']} interleaved rounds, "
        f"{report['cores']} cores (os.cpu_count {os.cpu_count()}); median (range) images/s"
    )
    print(f"chunk size, each model alone, {report['default_threads']} thread(s):")
    for name, by_size in report["chunk_images_per_s"].items():
        print(f"  {name:<10}" + "".join(f"  {size}: {spread(rates, 1)}" for size, rates in by_size.items()))
    print(f"both models at once, NudeNet in chunks of {report['batch_size']}, open_nsfw in chunks of:")
    for size, rates in report["together_open_nsfw_chunk_images_per_s"].items():
        print(f"  {size:<6} {spread(rates, 1):>20}")
    print(f"threads per pool, both models at once, batches of {report['batch_size']}:")
    for pair, rates in report["threads_images_per_s"].items():
        shares = report["threads_busy_share"][pair]
        busy = ", ".join(f"{name} busy {statistics.median(values):.0%}" for name, values in shares.items())
        print(f"  {pair:<6} {spread(rates, 1):>20}   {busy}")
    for line in report["verdicts"]:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
