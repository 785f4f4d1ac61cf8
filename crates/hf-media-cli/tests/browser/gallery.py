"""The gallery of `hf-media serve` in headless Chromium, driven by Playwright (sync API).

Run by crates/hf-media-cli/tests/gallery_browser.rs against `hf-media serve --emulator`; by hand:

    python gallery.py --url http://127.0.0.1:8787 --chromium /usr/bin/chromium --scenario full \
        --screenshot /tmp/gallery.png

Scenarios:
  full  an open server: paging over media made through the API, a prompt submitted from the page (a
        placeholder with progress, then the decoded image), the grid after a reload (prompt, model,
        provider, seed; newest first), the viewer (full media and record), a video (played when this
        Chromium plays H.264, else a clean load failure), a phone-width layout, and a screenshot.
  key   a server with --api-key: the page asks for the key before any request, a wrong key is refused,
        the right one loads the gallery and is kept across a reload, a generation with it, "forget".

Prints one JSON line of what it saw on success; any failed check raises (exit code 1).
"""

import argparse
import json
import re
import sys
import time

from playwright.sync_api import expect, sync_playwright

H264 = 'video/mp4; codecs="avc1.42E01E"'
IMAGE_MODEL = "black-forest-labs/FLUX.1-schnell"
VIDEO_MODEL = "Wan-AI/Wan2.2-T2V-A14B"
# Text that would run as HTML if the page ever used innerHTML with record data.
HOSTILE = 'a red fox in the snow <b>bold</b> <img src=x onerror="window.__xss=1"> & "quotes"'
TIMEOUT_MS = 10_000


def check(condition, message):
    if not condition:
        raise AssertionError(message)


class Console:
    """Every console error and uncaught exception of the page (some expected ones allowed)."""

    def __init__(self, page):
        self.errors = []
        self.allowed = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def _console(self, message):
        if message.type == "error":
            self.errors.append(message.text)

    def allow(self, fragment):
        self.allowed.append(fragment)

    def expect_clean(self, where):
        unexpected = [e for e in self.errors if not any(a in e for a in self.allowed)]
        check(not unexpected, f"console errors {where}: {unexpected}")


def ready(page, url):
    page.goto(url)
    page.wait_for_selector("html[data-ready=true]", state="attached", timeout=TIMEOUT_MS)


def wait_decoded(page, selector):
    """Waits until the image at `selector` is decoded; its natural size."""
    page.wait_for_function(
        "(s) => { const i = document.querySelector(s); return i && i.complete && i.naturalWidth > 0; }",
        arg=selector,
        timeout=TIMEOUT_MS,
    )
    return page.eval_on_selector(selector, "i => [i.naturalWidth, i.naturalHeight]")


# Media made through the API, as another client would (oldest first).
SEEDED = [
    "a lighthouse on a cliff at dawn",
    "a bowl of ramen, studio photo",
    "an astronaut riding a horse, oil painting",
    "a cat asleep on a stack of books",
    "a neon city street in the rain",
    "a watercolour map of an island",
    "a hot air balloon over a canyon",
    "a tiny robot watering a plant",
    "a forest of glass trees",
    "a sailing ship in a bottle",
    "a mountain lake, long exposure",
    "a stained glass hummingbird",
]


def seed_media(page, url):
    """Makes the SEEDED images through the API (fast: a provider with no delay), as another client would."""
    for prompt in SEEDED:
        response = page.request.post(
            f"{url}/v1/images/generations",
            data={"prompt": prompt, "model": f"{IMAGE_MODEL}:together", "size": "256x256"},
            timeout=TIMEOUT_MS,
        )
        check(response.ok, f"seeding an image: {response.status} {response.text()[:300]}")


def finished(card, timeout):
    """Waits until the placeholder `card` is done (else raises with what it says)."""
    expect(card).to_have_attribute("data-state", re.compile("^(done|failed)$"), timeout=timeout)
    if card.get_attribute("data-state") != "done":
        raise AssertionError(f"the generation failed: {card.locator('.status').inner_text()}")


def submit(page, prompt, model, size, **choices):
    page.fill("#prompt", prompt)
    page.select_option("#model", value=model)
    page.select_option("#size", value=size)
    for field, value in choices.items():
        page.select_option(f"#{field}", value=str(value))
    page.click("#generate")


def generate_image(page, prompt, expect_progress):
    """Submits `prompt`; the placeholder's progress seen, the decoded size, and the card's meta line."""
    jobs_before = page.locator("#jobs > li").count()
    submit(page, prompt, IMAGE_MODEL, "256x256", count=1)
    card = page.locator("#jobs > li").first
    expect(page.locator("#jobs > li")).to_have_count(jobs_before + 1, timeout=TIMEOUT_MS)
    expect(card.locator(".prompt")).to_have_text(prompt)
    progress_seen = []
    if expect_progress:
        # The placeholder: busy, a progress bar, a status that names the provider.
        expect(card).to_have_attribute("aria-busy", "true")
        expect(card.locator("progress")).to_be_visible()
        card.locator(".status").filter(has_text="fal-ai").wait_for(timeout=TIMEOUT_MS)
        progress_seen.append(card.locator("progress").evaluate("p => p.value"))
        progress_seen.append(card.locator(".status").inner_text())
        check(progress_seen[0] > 0, f"the progress bar moved: {progress_seen}")
    finished(card, TIMEOUT_MS)
    size = wait_decoded(page, "#jobs > li:first-child img")
    check(size == [256, 256], f"the image is 256×256: {size}")
    src = card.locator("img").get_attribute("src")
    check(src.startswith("http") and "/media/" in src, f"the image comes from /media/: {src[:80]}")
    return progress_seen, size, card.locator(".meta").inner_text()


def generate_video(page, keyed):
    """Submits a video prompt; what the <video> did."""
    can_play = page.evaluate("(t) => document.createElement('video').canPlayType(t)", H264)
    submit(page, "a paper boat on a river", VIDEO_MODEL, "256x256", seconds=1)
    card = page.locator("#jobs > li").first
    expect(card).to_have_attribute("data-kind", "video")
    finished(card, TIMEOUT_MS * 3)
    video = card.locator("video")
    src = video.get_attribute("src")
    if keyed:
        check(src.startswith("blob:"), f"with a key, the video plays from a blob: URL: {src}")
    else:
        check(src.endswith("/content") and "/v1/videos/" in src, f"the video's src is its content: {src}")
    if can_play:
        page.wait_for_function(
            """() => { const v = document.querySelector('#jobs > li:first-child video');
                       return v && !v.error && v.readyState >= 2 && v.duration > 0; }""",
            timeout=TIMEOUT_MS,
        )
        video.evaluate("v => v.play()")
        start = video.evaluate("v => v.currentTime")
        page.wait_for_function(
            "(t) => { const v = document.querySelector('#jobs > li:first-child video'); "
            "return v.currentTime !== t || v.readyState >= 3; }",
            arg=start,
            timeout=TIMEOUT_MS,
        )
        state = video.evaluate(
            "v => ({readyState: v.readyState, duration: v.duration, width: v.videoWidth, height: v.videoHeight,"
            " currentTime: v.currentTime, paused: v.paused})"
        )
        check(state["width"] == 256 and state["height"] == 256, f"the video is 256×256: {state}")
        check(state["duration"] > 0, f"the video has a duration: {state}")
    else:
        # No H.264 in this Chromium: the element points at the media and gives up cleanly.
        page.wait_for_function(
            "() => { const v = document.querySelector('#jobs > li:first-child video'); "
            "return v.error || v.networkState === HTMLMediaElement.NETWORK_NO_SOURCE; }",
            timeout=TIMEOUT_MS,
        )
        state = video.evaluate("v => ({error: v.error && v.error.code, networkState: v.networkState})")
    state["can_play"] = can_play
    return state


def full(browser, url, screenshot):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    console = Console(page)
    seen = {}

    ready(page, url)
    check(page.title() == "hf-media gallery", page.title())
    groups = dict(page.eval_on_selector_all(
        "#model optgroup", "gs => gs.map(g => [g.label, [...g.children].map(o => o.value)])"))
    check(IMAGE_MODEL in groups.get("Images", []), f"image models: {groups}")
    check(VIDEO_MODEL in groups.get("Videos", []), f"video models: {groups}")
    expect(page.locator("#gallery-note")).to_have_text("No media yet: generate some above.")
    console.expect_clean("on loading")

    # A prompt from the page (markup in it, to be shown as text): the placeholder's progress, the image.
    progress, size, meta = generate_image(page, HOSTILE, expect_progress=True)
    seen["progress"], seen["image_size"] = progress, size
    check(IMAGE_MODEL in meta and "fal-ai" in meta and "seed " in meta, f"the card's record: {meta}")
    seed = meta.rsplit("seed ", 1)[1].strip()
    expect(page.locator("#gallery > li")).to_have_count(1)

    # After a reload, the grid shows it with its record.
    ready(page, url)
    first = page.locator("#gallery > li").first
    expect(first.locator(".prompt")).to_have_text(HOSTILE)
    expect(first.locator(".meta")).to_have_text(f"{IMAGE_MODEL} · fal-ai · seed {seed}")
    wait_decoded(page, "#gallery > li:first-child img")

    # A click opens the full media and its record.
    first.locator("a").click()
    viewer = page.locator("#viewer")
    expect(viewer).to_be_visible()
    expect(page.locator("#viewer-title")).to_have_text("Image")
    viewer_size = wait_decoded(page, "#viewer-media img")
    check(viewer_size == [256, 256], f"the viewer shows the full image: {viewer_size}")
    facts = page.locator("#viewer-facts").inner_text()
    for fact in (HOSTILE, IMAGE_MODEL, "fal-ai", seed):
        check(fact in facts, f"the viewer shows {fact!r}: {facts}")
    page.click("#viewer-details summary")
    record = json.loads(page.locator("#viewer-record").inner_text())
    check(record.get("prompt") == HOSTILE and str(record.get("seed")) == seed, f"the record: {record}")
    href = page.locator("#viewer-link").get_attribute("href")
    check("/media/" in href, f"the viewer links the file: {href}")
    page.click("#viewer-close")
    expect(viewer).to_be_hidden()

    # Record texts stay text.
    check(page.evaluate("() => window.__xss") is None, "a prompt's markup never runs")
    check(page.locator("main b, #viewer b").count() == 0, "a prompt's markup is never parsed")

    # 12 more through the API: newest first, 12 a page, so the page's image is alone on page 2.
    seed_media(page, url)
    ready(page, url)
    expect(page.locator("#gallery > li")).to_have_count(12)
    expect(page.locator("#gallery > li").first.locator(".prompt")).to_have_text(SEEDED[-1])
    expect(page.locator("#page-label")).to_have_text("Page 1 of 2")
    expect(page.locator("#gallery-count")).to_have_text("13 in the output folder")
    expect(page.locator("#newer")).to_be_disabled()
    page.click("#older")
    expect(page.locator("#gallery > li")).to_have_count(1)
    expect(page.locator("#gallery .prompt")).to_have_text(HOSTILE)
    expect(page.locator("#older")).to_be_disabled()
    page.click("#newer")
    expect(page.locator("#page-label")).to_have_text("Page 1 of 2")
    expect(page.locator("#gallery > li")).to_have_count(12)

    # A video.
    seen["video"] = generate_video(page, keyed=False)
    ready(page, url)
    expect(page.locator("#gallery > li").first).to_have_attribute("data-kind", "video")
    page.locator("#gallery > li").first.locator("a").click()
    expect(page.locator("#viewer-title")).to_have_text("Video")
    expect(page.locator("#viewer-media video")).to_have_count(1)
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()

    # A phone's width: nothing wider than the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    check(overflow <= 0, f"the page fits a phone's width (it overflows by {overflow}px)")
    page.set_viewport_size({"width": 1280, "height": 900})

    # The screenshot: two fresh generations in the tab, the grid below.
    ready(page, url)
    for prompt in ("a koi pond seen from above", "a red fox in the snow, watercolour"):
        submit(page, prompt, IMAGE_MODEL, "256x256", count=1)
    expect(page.locator("#jobs > li[data-state=done]")).to_have_count(2, timeout=TIMEOUT_MS * 2)
    page.wait_for_function(
        "() => [...document.images].every(i => i.complete && i.naturalWidth > 0)", timeout=TIMEOUT_MS)
    page.fill("#prompt", "a fox in a field of sunflowers, golden hour")
    page.locator("#prompt").blur()
    page.screenshot(path=screenshot, full_page=True)
    console.expect_clean("in the full scenario")
    context.close()
    return seen


def keyed(browser, url, key, screenshot):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    console = Console(page)
    requests = []
    page.on("request", lambda r: requests.append(r.url) if "/v1/" in r.url or "/gallery/" in r.url else None)

    ready_promise = page.goto(url)
    check(ready_promise.ok, "the page loads without a key")
    # The page asks first: no API request before the key.
    expect(page.locator("#key-panel")).to_be_visible()
    expect(page.locator("#key-message")).to_have_text("This server needs an API key.")
    expect(page.locator("#key-input")).to_be_focused()
    page.wait_for_timeout(300)
    check(not requests, f"no request before the key: {requests}")

    # A wrong key is refused (a 401, the one console error allowed), the form asks again.
    console.allow("401")
    page.fill("#key-input", "not-the-key")
    page.press("#key-input", "Enter")
    expect(page.locator("#key-message")).to_have_text("That key was refused: enter another.")
    expect(page.locator("#key-panel")).to_be_visible()
    check(page.evaluate("() => localStorage.getItem('hf-media.api-key')") is None, "a refused key is not kept")

    page.fill("#key-input", key)
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("html[data-ready=true]", state="attached")
    expect(page.locator("#key-panel")).to_be_hidden()
    expect(page.locator("#gallery-note")).to_have_text("No media yet: generate some above.")
    expect(page.locator("#forget-key")).to_be_visible()
    check(page.evaluate("() => localStorage.getItem('hf-media.api-key')") == key, "the key is kept")
    check(page.locator("#model option").count() > 2, "the models loaded with the key")

    # Kept across a reload: asked once.
    console.allowed.clear()
    before = len(console.errors)
    ready(page, url)
    expect(page.locator("#key-panel")).to_be_hidden()
    progress, size, _ = generate_image(page, "a fox behind a key", expect_progress=False)
    ready(page, url)
    expect(page.locator("#gallery > li")).to_have_count(1)
    expect(page.locator("#gallery .prompt")).to_have_text("a fox behind a key")
    wait_decoded(page, "#gallery > li:first-child img")
    video = generate_video(page, keyed=True)
    check(len(console.errors) == before, f"no console error with the key: {console.errors[before:]}")
    page.screenshot(path=screenshot, full_page=True)

    # Forget it: asked again.
    page.click("#forget-key")
    expect(page.locator("#key-panel")).to_be_visible()
    expect(page.locator("#forget-key")).to_be_hidden()
    check(page.evaluate("() => localStorage.getItem('hf-media.api-key')") is None, "the key is forgotten")
    context.close()
    return {"image_size": size, "video": video}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--chromium", required=True)
    parser.add_argument("--scenario", choices=["full", "key"], required=True)
    parser.add_argument("--screenshot", required=True)
    parser.add_argument("--key")
    args = parser.parse_args()
    started = time.monotonic()
    with sync_playwright() as p:
        # Root (CI) cannot use Chromium's sandbox.
        browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=["--no-sandbox"])
        try:
            if args.scenario == "full":
                seen = full(browser, args.url, args.screenshot)
            else:
                seen = keyed(browser, args.url, args.key, args.screenshot)
        finally:
            browser.close()
    seen["seconds"] = round(time.monotonic() - started, 2)
    print(json.dumps(seen))


if __name__ == "__main__":
    sys.exit(main())
