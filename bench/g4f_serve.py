#!/usr/bin/env python3
"""gpt4free's API server (`g4f api`) for the `serve` scenario of `cargo xtask bench`, its HuggingFaceMedia
provider pointed at the same emulator as `hf-media serve`.

HuggingFaceMedia builds its URLs inline (f-strings in `get_mapping` and `create_async_generator`, not
module constants): `https://huggingface.co/api/models/{model}?expand[]=inferenceProviderMapping` for the
mapping, `https://api-inference.huggingface.co/models/{id}` for hf-inference and
`https://router.huggingface.co/{provider}/…` for the others. They all go through the `StreamSession` the
module imports, so this wrapper swaps that name for a session whose `get`/`post` rewrite those three
origins to `--hub` and `--router` (the router base, without `/{provider}`), and changes nothing else: the
request bodies, the sessions, the connection pool (aiohttp's shared connector), the media saving and the
API server are g4f's own.

Then it serves g4f's FastAPI app (`g4f.api:create_app`, what `g4f api` serves) with uvicorn on a socket it
has bound itself on 127.0.0.1 (port 0: a free one), prints `g4f listening on http://127.0.0.1:PORT` and
serves until killed. uvicorn's access log is off (`hf-media serve` logs no line per successful request
either); the event loop and HTTP parser are what `pip install "g4f[api]"` brings (asyncio, h11). Run it
with its working directory in a scratch folder: g4f saves media to `./generated_media`.

Two changes are needed to run it offline, neither on the request path: g4f's list of its own hosted
providers (fetched from https://g4f.dev on import) is given as a stand-in, and the provider is set as
`g4f api --provider HuggingFaceMedia` sets it (see below).
"""

import argparse
import os
import socket
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hub", required=True, help="the Hub's URL (instead of https://huggingface.co)")
    parser.add_argument("--router", required=True, help="the router's base URL (without /{provider})")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--provider", default="HuggingFaceMedia", help="as `g4f api --provider`")
    args = parser.parse_args()
    hub = args.hub.rstrip("/")
    router = args.router.rstrip("/")

    os.environ.setdefault("G4F_CONFIG_DIR", os.path.abspath("g4f-config"))
    os.environ.setdefault("G4F_CACHE_DIR", os.path.abspath("g4f-cache"))

    # g4f fetches the list of its hosted providers from https://g4f.dev when a provider is first named
    # (importing g4f.api builds `G4FSpace` from its "default" entry); offline, that fails. The list is of
    # no use to HuggingFaceMedia: it is given with only a "default" entry on a closed local port.
    from g4f.client.factory import AbstractClientFactory

    AbstractClientFactory._live_providers = {
        "providers": {"default": {"baseUrl": "http://127.0.0.1:9/v1"}},
        "defaultModels": {},
    }

    import uvicorn
    import g4f.api
    import g4f.version
    import importlib

    # The module (the package's `HuggingFaceMedia` attribute is the class).
    module = importlib.import_module("g4f.Provider.needs_auth.hf.HuggingFaceMedia")

    rewrites = [
        ("https://api-inference.huggingface.co/", router + "/hf-inference/"),
        ("https://router.huggingface.co/", router + "/"),
        ("https://huggingface.co/", hub + "/"),
    ]

    def rewrite(url):
        for origin, target in rewrites:
            if isinstance(url, str) and url.startswith(origin):
                return target + url[len(origin):]
        return url

    original = module.StreamSession

    class Redirected:
        """The session HuggingFaceMedia opens, with its URLs sent to the emulator."""

        def __init__(self, inner):
            self._inner = inner

        def get(self, url, *a, **kw):
            return self._inner.get(rewrite(url), *a, **kw)

        def post(self, url, *a, **kw):
            return self._inner.post(rewrite(url), *a, **kw)

        def __getattr__(self, name):
            return getattr(self._inner, name)

    class RedirectedSession:
        def __init__(self, *a, **kw):
            self._session = original(*a, **kw)

        async def __aenter__(self):
            return Redirected(await self._session.__aenter__())

        async def __aexit__(self, *a):
            return await self._session.__aexit__(*a)

    module.StreamSession = RedirectedSession

    # As `g4f api --provider HuggingFaceMedia`: the provider of requests that name none. (Naming it in the
    # body of `POST /v1/images/generations` fails in g4f 8.8.6: the handler passes `provider` twice to
    # `client.images.generate`, a TypeError answered as a 500.)
    from g4f.config import AppConfig

    AppConfig.set_config(provider=args.provider)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(2048)
    port = sock.getsockname()[1]
    os.environ["G4F_API_HOST"] = "127.0.0.1"
    os.environ["G4F_API_PORT"] = str(port)

    config = uvicorn.Config(
        g4f.api.create_app,
        factory=True,
        access_log=False,
        log_level="warning",
        timeout_keep_alive=65,
        backlog=2048,
    )
    server = uvicorn.Server(config)
    print(f"g4f listening on http://127.0.0.1:{port}  (g4f {g4f.version.utils.current_version})", flush=True)
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
