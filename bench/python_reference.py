#!/usr/bin/env python3
"""The reference client of `cargo xtask bench`: huggingface_hub's InferenceClient doing the work that
`hf-media generate -n N` does, against the same emulator.

`total` calls of `InferenceClient.text_to_image(prompt, model=MODEL)` with provider "hf-inference" (raw
bytes, like ours), run by a ThreadPoolExecutor of `concurrency` threads; each image is saved to its own
file (`Image.save`, which is how a huggingface_hub user saves what `text_to_image` returns).

The Hub is pointed at the emulator with HF_ENDPOINT; the router, which huggingface_hub hard-codes as
`constants.INFERENCE_PROXY_TEMPLATE = "https://router.huggingface.co/{provider}"` (and which the
hf-inference helpers copy into their `base_url` when they are built), is patched to `--router`.

Prints one JSON line: generations, failures, wall_s, cpu_s (user + system of this process, threads
included, measured around the pool only: imports and client set-up are not counted).
"""

import argparse
import json
import os
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hub", required=True, help="the Hub's URL (HF_ENDPOINT)")
    parser.add_argument("--router", required=True, help="the router's base URL (without /{provider})")
    parser.add_argument("--model", default="stabilityai/sdxl-turbo")
    parser.add_argument("--total", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--out", required=True, help="folder for the images")
    args = parser.parse_args()

    # Before importing huggingface_hub: its constants read the environment at import time.
    os.environ["HF_ENDPOINT"] = args.hub
    os.environ["HF_TOKEN"] = "hf_emulator"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "0"

    from huggingface_hub import constants

    template = args.router.rstrip("/") + "/{provider}"
    constants.INFERENCE_PROXY_TEMPLATE = template

    from huggingface_hub import InferenceClient
    from huggingface_hub.inference import _providers

    # The provider helpers are built at import time with the original template as their base URL.
    for helpers in _providers.PROVIDERS.values():
        for helper in helpers.values():
            if getattr(helper, "base_url", "").startswith("https://router.huggingface.co"):
                helper.base_url = template.format(provider=helper.provider)

    os.makedirs(args.out, exist_ok=True)
    client = InferenceClient(provider="hf-inference", token="hf_emulator")

    def one(i: int) -> bool:
        try:
            image = client.text_to_image(f"bench image {i}", model=args.model)
            image.save(os.path.join(args.out, f"{i:05}.png"))
            return True
        except Exception as e:  # noqa: BLE001 - a failure is counted, and the first ones are shown
            if i < 3:
                print(f"generation {i} failed: {e!r}", file=sys.stderr)
            return False

    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        results = list(pool.map(one, range(args.total)))
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    ok = sum(results)
    print(json.dumps({"generations": ok, "failures": len(results) - ok, "wall_s": wall, "cpu_s": cpu}))
    return 0 if ok == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
