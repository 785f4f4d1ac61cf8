"""Drives `hf-media serve --emulator` with the official `openai` Python client (PyPI), as its users do.

Run by crates/hf-media-cli/tests/openai_client.rs:

    python openai_client.py --base-url http://ADDR/v1 --api-key KEY --work DIR CASE [CASE ...]

Each case runs in turn (a failing case does not stop the others) and prints one line on stdout:

    @@result {"case": NAME, "ok": true, "result": {...}}
    @@result {"case": NAME, "ok": false, "error": "Traceback ..."}

`result` holds what the case saw (image sizes decoded with Pillow, exception classes, status codes,
request counts, ...): the Rust test asserts on those values. The cases also assert here, with messages
saying what came back, so that a failure reads well in either place.
"""

import argparse
import base64
import io
import json
import os
import sys
import traceback
import urllib.request
import warnings
from urllib.parse import urlparse

# Every `videos.*` method of openai 3.x is marked deprecated (the Sora API shutdown): they still work, and
# their DeprecationWarning is no failure here.
warnings.filterwarnings("ignore", category=DeprecationWarning)

import openai  # noqa: E402
from PIL import Image  # noqa: E402

SCHNELL = "black-forest-labs/FLUX.1-schnell"
SCHNELL_FAL = SCHNELL + ":fal-ai"
EDIT_MODEL = "black-forest-labs/FLUX.1-Kontext-dev"
MULTI_EDIT_MODEL = "Qwen/Qwen-Image-Edit-2509"
VIDEO_MODEL = "Wan-AI/Wan2.2-T2V-A14B"
ANIMATE_MODEL = "Wan-AI/Wan2.2-I2V-A14B"
VIDEO_SIZE = "320x240"
# Small images keep the emulator (in a debug build) quick; only the url case asks for a large 1024x768.
SMALL = "256x256"

CASES = {}


def case(function):
    CASES[function.__name__] = function
    return function


class Context:
    def __init__(self, args):
        self.base_url = args.base_url
        self.api_key = args.api_key
        self.work = args.work
        os.makedirs(self.work, exist_ok=True)
        self.origin = "{0.scheme}://{0.netloc}".format(urlparse(self.base_url))
        self.requests = []
        self.client = self.make_client()

    def make_client(self, api_key=None, **kwargs):
        """A client on the server, counting every HTTP request it sends (retries included)."""

        def count(request):
            self.requests.append("{} {}".format(request.method, request.url.path))

        http_client = openai.DefaultHttpxClient(event_hooks={"request": [count]})
        # A stuck request fails here, with the client's own error, well before the Rust test gives up.
        kwargs.setdefault("timeout", 90)
        return openai.OpenAI(
            base_url=self.base_url,
            api_key=api_key or self.api_key,
            http_client=http_client,
            **kwargs,
        )

    def png(self, name, size=(64, 48), colour=(200, 40, 40)):
        """A PNG file made by Pillow, in the work folder."""
        path = os.path.join(self.work, name)
        Image.new("RGB", size, colour).save(path, format="PNG")
        return path


def decoded(data):
    """Pillow's reading of image bytes: format and size."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return {"format": image.format, "size": list(image.size)}


def fetch(url):
    """GETs a media URL with no key (as a browser or `urllib` would)."""
    # No proxy: the server is on a loopback address.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=60) as response:
        return response.status, response.headers.get("Content-Type"), response.read()


def attr(obj, name):
    """An extra field the server sent beyond OpenAI's typing (kept by the lenient client)."""
    value = getattr(obj, name, None)
    if value is None and getattr(obj, "model_extra", None):
        value = obj.model_extra.get(name)
    return value


def api_error(error):
    """What an openai exception carries."""
    response = getattr(error, "response", None)
    return {
        "class": type(error).__name__,
        "classes": [c.__name__ for c in type(error).__mro__],
        "status": getattr(error, "status_code", None),
        "code": getattr(error, "code", None),
        "type": getattr(error, "type", None),
        "param": getattr(error, "param", None),
        "message": str(error),
        "should_retry": response.headers.get("x-should-retry") if response is not None else None,
        "body": getattr(error, "body", None),
    }


def expect_error(call, *classes):
    try:
        value = call()
    except openai.APIError as error:  # every error the client raises for an answer
        if not isinstance(error, classes):
            raise AssertionError(
                "expected {}, got {}: {}".format([c.__name__ for c in classes], type(error).__name__, error)
            )
        return api_error(error)
    raise AssertionError("expected {}, but the call answered {!r}".format([c.__name__ for c in classes], value))


# ---------------------------------------------------------------------------------------------------------
# Images


@case
def generate_url(ctx):
    response = ctx.client.images.generate(
        model=SCHNELL_FAL, prompt="a red fox in the snow", n=2, size="1024x768", response_format="url"
    )
    assert response.data is not None and len(response.data) == 2, "two data entries: {!r}".format(response)
    images = []
    for entry in response.data:
        assert entry.url, "a url in every entry: {!r}".format(entry)
        assert entry.b64_json is None, "no b64_json with response_format=url"
        status, content_type, data = fetch(entry.url)
        images.append(
            {
                "url": entry.url,
                "status": status,
                "content_type": content_type,
                "index": attr(entry, "index"),
                "seed": attr(entry, "seed"),
                "revised_prompt": entry.revised_prompt,
                **decoded(data),
            }
        )
    return {
        "origin": ctx.origin,
        "created": response.created,
        "model": attr(response, "model"),
        "provider": attr(response, "provider"),
        "size": response.size,
        "output_format": response.output_format,
        "images": images,
    }


@case
def generate_b64(ctx):
    response = ctx.client.images.generate(
        model=SCHNELL_FAL, prompt="a lighthouse at dusk", size=SMALL, response_format="b64_json"
    )
    assert response.data and len(response.data) == 1, "one data entry: {!r}".format(response)
    entry = response.data[0]
    assert entry.b64_json, "b64_json in the entry"
    assert entry.url is None, "no url with response_format=b64_json: {!r}".format(entry.url)
    return {
        "revised_prompt": entry.revised_prompt,
        "model": attr(response, "model"),
        "provider": attr(response, "provider"),
        **decoded(base64.b64decode(entry.b64_json)),
    }


@case
def generate_extra_body(ctx):
    response = ctx.client.images.generate(
        model=SCHNELL_FAL,
        prompt="a blue bicycle",
        size=SMALL,
        extra_body={"seed": 42, "negative_prompt": "blur", "steps": 4},
    )
    assert response.data and len(response.data) == 1, "one data entry: {!r}".format(response)
    entry = response.data[0]
    assert entry.url, "a url (the default response_format): {!r}".format(entry)
    _, _, data = fetch(entry.url)
    return {"url": entry.url, "seed": attr(entry, "seed"), **decoded(data)}


def read_stream(stream, prefix):
    """The events of a streaming answer: every type in order, the partial and the completed events."""
    types = []
    events = []
    partials = []
    completed = []
    for event in stream:
        types.append(event.type)
        events.append({"type": event.type, "index": attr(event, "index")})
        if event.type == prefix + ".partial_image":
            partials.append(
                {
                    "index": attr(event, "index"),
                    "partial_image_index": event.partial_image_index,
                    "b64_json": bool(event.b64_json),
                }
            )
        elif event.type == prefix + ".completed":
            assert event.b64_json, "b64_json in a completed event: {!r}".format(event)
            completed.append(
                {
                    "index": attr(event, "index"),
                    "url": attr(event, "url"),
                    "output_format": event.output_format,
                    "size_field": event.size,
                    **decoded(base64.b64decode(event.b64_json)),
                }
            )
    assert completed, "completed events among {}".format(types)
    return {"types": types, "events": events, "partials": partials, "completed": completed}


@case
def generate_stream(ctx):
    stream = ctx.client.images.generate(
        model=SCHNELL_FAL, prompt="a paper boat", n=2, size=SMALL, stream=True, partial_images=1
    )
    return read_stream(stream, "image_generation")


@case
def generate_stream_partials(ctx):
    """Partial events as the SDK types them, for two images with one partial image each."""
    stream = ctx.client.images.generate(
        model=SCHNELL_FAL, prompt="a glass swan", n=2, size="64x64", stream=True, partial_images=1
    )
    return read_stream(stream, "image_generation")


@case
def generate_stream_final_only(ctx):
    """`partial_images` left out (0): the final image in one event, nothing before it."""
    stream = ctx.client.images.generate(model=SCHNELL_FAL, prompt="a kite", size="64x64", stream=True)
    return read_stream(stream, "image_generation")


@case
def edit_stream(ctx):
    path = ctx.png("edit-stream.png")
    with open(path, "rb") as image:
        stream = ctx.client.images.edit(
            model=EDIT_MODEL, image=image, prompt="paint it gold", size="64x64", stream=True, partial_images=2
        )
        return read_stream(stream, "image_edit")


def edit_answer(response):
    assert response.data, "data in the answer: {!r}".format(response)
    images = []
    for entry in response.data:
        _, _, data = fetch(entry.url)
        images.append({"url": entry.url, **decoded(data)})
    return {"model": attr(response, "model"), "provider": attr(response, "provider"), "images": images}


@case
def edit_one(ctx):
    path = ctx.png("edit-input.png")
    with open(path, "rb") as image:
        response = ctx.client.images.edit(model=EDIT_MODEL, image=image, prompt="make it blue", size=SMALL)
    return edit_answer(response)


@case
def edit_tuple(ctx):
    path = ctx.png("edit-tuple.png", colour=(20, 160, 60))
    with open(path, "rb") as image:
        data = image.read()
    response = ctx.client.images.edit(
        model=EDIT_MODEL, image=("tuple.png", data, "image/png"), prompt="add a hat", size=SMALL
    )
    return edit_answer(response)


@case
def edit_list(ctx):
    first = ctx.png("edit-first.png", colour=(200, 40, 40))
    second = ctx.png("edit-second.png", colour=(40, 40, 200))
    with open(first, "rb") as a, open(second, "rb") as b:
        response = ctx.client.images.edit(
            model=MULTI_EDIT_MODEL, image=[a, b], prompt="put the two side by side", size=SMALL
        )
    return edit_answer(response)


# ---------------------------------------------------------------------------------------------------------
# Models and errors


@case
def models(ctx):
    listed = ctx.client.models.list()
    ids = [model.id for model in listed.data]
    model = ctx.client.models.retrieve(SCHNELL)
    missing = expect_error(lambda: ctx.client.models.retrieve("nobody/not-a-model"), openai.NotFoundError)
    return {
        "ids": ids,
        "objects": sorted({model.object for model in listed.data}),
        "retrieved": {"id": model.id, "object": model.object, "owned_by": model.owned_by},
        "missing": missing,
    }


@case
def bad_key(ctx):
    client = ctx.make_client(api_key="wrong")
    before = len(ctx.requests)
    error = expect_error(
        lambda: client.images.generate(model=SCHNELL_FAL, prompt="x", size=SMALL), openai.AuthenticationError
    )
    listing = expect_error(lambda: client.models.list(), openai.AuthenticationError)
    return {"error": error, "models_error": listing, "requests": len(ctx.requests) - before}


@case
def unknown_model(ctx):
    before = len(ctx.requests)
    error = expect_error(
        lambda: ctx.client.images.generate(model="nobody/not-a-model", prompt="x", size=SMALL), openai.NotFoundError
    )
    return {"error": error, "requests": len(ctx.requests) - before}


@case
def failing_provider(ctx):
    """Against a server whose fal-ai fails every submit: the error, and no retry by the client."""
    before = len(ctx.requests)
    error = expect_error(
        lambda: ctx.client.images.generate(model=SCHNELL_FAL, prompt="a doomed fox", size=SMALL),
        openai.APIStatusError,
    )
    return {"error": error, "requests": ctx.requests[before:], "max_retries": ctx.client.max_retries}


# ---------------------------------------------------------------------------------------------------------
# Videos


def video_fields(video):
    return {
        "id": video.id,
        "object": video.object,
        "status": video.status,
        "progress": video.progress,
        "model": video.model,
        "seconds": video.seconds,
        "size": video.size,
        "error": video.error.model_dump() if video.error is not None else None,
    }


def download(ctx, video_id, name):
    path = os.path.join(ctx.work, name)
    ctx.client.videos.download_content(video_id).write_to_file(path)
    with open(path, "rb") as file:
        head = file.read(12)
    return {"path": path, "bytes": os.path.getsize(path), "box": head[4:8].decode("latin-1")}


@case
def video_lifecycle(ctx):
    # A small size: the emulator's default-sized MP4 takes a debug build half a minute.
    video = ctx.client.videos.create_and_poll(
        model=VIDEO_MODEL, prompt="waves on a beach", seconds="4", size=VIDEO_SIZE, poll_interval_ms=200
    )
    created = video_fields(video)
    assert video.status == "completed", "the job completed: {!r}".format(video)
    content = download(ctx, video.id, "video.mp4")
    retrieved = video_fields(ctx.client.videos.retrieve(video.id))
    listed = [v.id for v in ctx.client.videos.list()]
    deleted = ctx.client.videos.delete(video.id)
    gone = expect_error(lambda: ctx.client.videos.retrieve(video.id), openai.NotFoundError)
    return {
        "created": created,
        "content": content,
        "retrieved": retrieved,
        "listed": listed,
        "deleted": {"id": deleted.id, "object": deleted.object, "deleted": deleted.deleted},
        "gone": gone,
    }


@case
def video_from_image(ctx):
    path = ctx.png("first-frame.png", size=(128, 96))
    with open(path, "rb") as image:
        video = ctx.client.videos.create_and_poll(
            model=ANIMATE_MODEL, prompt="the square starts to spin", input_reference=image, poll_interval_ms=200
        )
    created = video_fields(video)
    assert video.status == "completed", "the job completed: {!r}".format(video)
    return {"created": created, "content": download(ctx, video.id, "animated.mp4")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--work", required=True, help="a folder for the files the cases make")
    parser.add_argument("cases", nargs="+", choices=sorted(CASES))
    args = parser.parse_args()
    ctx = Context(args)
    for name in args.cases:
        try:
            line = {"case": name, "ok": True, "result": CASES[name](ctx)}
        except Exception:  # noqa: BLE001 - every failure is reported, and the next case runs
            line = {"case": name, "ok": False, "error": traceback.format_exc()}
        print("@@result " + json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
