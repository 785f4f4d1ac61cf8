#!/usr/bin/env python3
"""The Python baseline of the batch scenario of `cargo xtask bench`: huggingface_hub's InferenceClient
doing the work of `hf-media batch prompts.jsonl -o DIR --concurrency N`, against the same emulator, the
way a huggingface_hub user would script it: no state, no resume, no result files.

The JSONL input is read (one JSON object a line: `prompt`, optional `custom_id`, `model`, `seed`), and
every line is one `InferenceClient.text_to_image(prompt, model=MODEL, seed=…)` call with provider
"hf-inference" (a line's `model:provider` is taken as `model`), run by a ThreadPoolExecutor of `concurrency` threads; each image is saved to its own file
(`Image.save`, which is how a huggingface_hub user saves what `text_to_image` returns), in sub-folders of
at most 10,000 files like the batch's.

The Hub and the router are pointed at the emulator as in `python_reference.py` (shared here).

Prints one JSON line: items, failures, wall_s, cpu_s (user + system of this process, threads included,
measured around reading the input and the pool: imports and client set-up are not counted).
"""

import argparse
import json
import os
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor

PER_FOLDER = 10_000


def point_at_emulator(hub: str, router: str) -> None:
    """HF_ENDPOINT to the emulator, and huggingface_hub's hard-coded router template to `router`."""
    # Before importing huggingface_hub: its constants read the environment at import time.
    os.environ["HF_ENDPOINT"] = hub
    os.environ["HF_TOKEN"] = "hf_emulator"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "0"

    from huggingface_hub import constants

    template = router.rstrip("/") + "/{provider}"
    constants.INFERENCE_PROXY_TEMPLATE = template

    from huggingface_hub.inference import _providers

    # The provider helpers are built at import time with the original template as their base URL.
    for helpers in _providers.PROVIDERS.values():
        for helper in helpers.values():
            if getattr(helper, "base_url", "").startswith("https://router.huggingface.co"):
                helper.base_url = template.format(provider=helper.provider)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="the JSONL file (one object a line with a `prompt`)")
    parser.add_argument("--hub", required=True, help="the Hub's URL (HF_ENDPOINT)")
    parser.add_argument("--router", required=True, help="the router's base URL (without /{provider})")
    parser.add_argument("--model", default="stabilityai/sdxl-turbo", help="the model of lines that name none")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--out", required=True, help="folder for the images")
    args = parser.parse_args()

    point_at_emulator(args.hub, args.router)
    from huggingface_hub import InferenceClient

    os.makedirs(args.out, exist_ok=True)
    client = InferenceClient(provider="hf-inference", token="hf_emulator")

    def one(job) -> bool:
        position, row = job
        try:
            name = row.get("custom_id") or f"line-{position + 1:06}"
            folder = os.path.join(args.out, f"{position // PER_FOLDER:05}")
            # A line's `model:provider` is the model on the client's provider (hf-inference) for huggingface_hub.
            model = (row.get("model") or args.model).split(":")[0]
            image = client.text_to_image(row["prompt"], model=model, seed=row.get("seed"))
            image.save(os.path.join(folder, f"{name}-0.png"))
            return True
        except Exception as e:  # noqa: BLE001 - a failure is counted, and the first ones are shown
            if position < 3:
                print(f"line {position + 1} failed: {e!r}", file=sys.stderr)
            return False

    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    with open(args.input, encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines if line.strip()]
    for folder in range(len(rows) // PER_FOLDER + 1):
        os.makedirs(os.path.join(args.out, f"{folder:05}"), exist_ok=True)
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        results = list(pool.map(one, enumerate(rows)))
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    ok = sum(results)
    print(json.dumps({"items": ok, "failures": len(results) - ok, "wall_s": wall, "cpu_s": cpu}))
    return 0 if ok == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
