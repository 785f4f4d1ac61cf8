"use strict";
// The hf-media gallery: generate images (the streaming images API) and videos (the videos API), and page
// through the media of the output folder. Every text from the server is set with textContent, never as
// HTML (prompts are user text).
(() => {
  const KEY_STORE = "hf-media.api-key";
  const MODEL_STORE = "hf-media.model";
  const PER_PAGE = 12;
  const MAX_JOBS = 12;
  const H264 = 'video/mp4; codecs="avc1.42E01E"';
  const SIZES = {
    image: [
      ["1024x1024", "1024×1024"],
      ["1344x768", "1344×768 (wide)"],
      ["768x1344", "768×1344 (tall)"],
      ["512x512", "512×512"],
      ["256x256", "256×256 (draft)"],
      ["auto", "Model default"],
    ],
    video: [
      ["832x480", "832×480 (wide)"],
      ["480x832", "480×832 (tall)"],
      ["1280x720", "1280×720 (HD)"],
      ["256x256", "256×256 (draft)"],
      ["auto", "Model default"],
    ],
  };

  const $ = (id) => document.getElementById(id);
  const keyRequired = document.documentElement.dataset.apiKey === "required";
  const state = { key: readStore(KEY_STORE), keyWait: null, keyDone: null, page: 1, listing: 0 };

  function readStore(name) {
    try { return localStorage.getItem(name) || ""; } catch { return ""; }
  }
  function writeStore(name, value) {
    try { value ? localStorage.setItem(name, value) : localStorage.removeItem(name); } catch { /* private mode */ }
  }

  /** An element; `text` sets its text, other attributes are set as strings (never HTML). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = value;
      else if (name === "class") node.className = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }
  /** A record's value as text. */
  function text(value) {
    if (value === null || value === undefined) return "";
    return typeof value === "string" ? value : JSON.stringify(value);
  }
  /** `url` when it is an http(s) or blob URL (a record can hold anything: no `javascript:` links). */
  function safeUrl(url) {
    if (typeof url !== "string" || !url) return "";
    try {
      const parsed = new URL(url, location.href);
      return ["http:", "https:", "blob:"].includes(parsed.protocol) ? parsed.href : "";
    } catch {
      return "";
    }
  }
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // ---- The API key -------------------------------------------------------------------------------

  function showKeyState() {
    $("forget-key").hidden = !state.key;
  }
  /** Shows the key form; resolves once a key is entered (one form for every request that waits). */
  function askKey(message) {
    $("key-message").textContent = message;
    $("key-panel").hidden = false;
    if (!state.keyWait) {
      state.keyWait = new Promise((resolve) => { state.keyDone = resolve; });
      $("key-input").focus();
    }
    return state.keyWait;
  }
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) return;
    state.key = key;
    writeStore(KEY_STORE, key);
    $("key-input").value = "";
    $("key-panel").hidden = true;
    showKeyState();
    const done = state.keyDone;
    state.keyWait = null;
    state.keyDone = null;
    if (done) done();
  });
  $("forget-key").addEventListener("click", () => {
    state.key = "";
    writeStore(KEY_STORE, "");
    showKeyState();
    $("gallery").replaceChildren();
    if (keyRequired) askKey("The key was forgotten: enter one to use this server.").then(() => loadAll());
  });

  /** fetch() with the key; a 401 asks for a key (again) and retries. */
  async function api(path, init = {}) {
    for (let attempt = 0; attempt < 5; attempt += 1) {
      const sent = state.key;
      const headers = Object.assign({}, init.headers || {});
      if (sent) headers.Authorization = "Bearer " + sent;
      const response = await fetch(path, Object.assign({}, init, { headers }));
      if (response.status !== 401) return response;
      if (sent && state.key === sent) {
        state.key = "";
        writeStore(KEY_STORE, "");
        showKeyState();
      }
      // A key entered meanwhile (another request's 401 asked for it) is tried at once.
      if (!state.key) await askKey(sent ? "That key was refused: enter another." : "This server needs an API key.");
    }
    throw new Error("the API key was refused");
  }
  /** The message of an error answer (the OpenAI error shape), or its status. */
  async function errorOf(response) {
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) return String(body.error.message);
    } catch { /* not JSON */ }
    return `The server answered ${response.status} ${response.statusText}`.trim();
  }

  // ---- Models and sizes --------------------------------------------------------------------------

  const models = new Map();
  async function loadModels() {
    let list = [];
    try {
      const response = await api("/v1/models");
      if (response.ok) list = (await response.json()).data || [];
      else $("model-hint").textContent = "No model list: " + (await errorOf(response));
    } catch (error) {
      $("model-hint").textContent = "No model list: " + error.message;
    }
    const select = $("model");
    const groups = [["Images", "image", "text-to-image"], ["Videos", "video", "text-to-video"]];
    select.replaceChildren();
    for (const [label, kind, task] of groups) {
      const group = el("optgroup", { label });
      const found = list.filter((m) => Array.isArray(m.tasks) && m.tasks.includes(task));
      if (!found.length) group.append(el("option", { value: "", "data-kind": kind, text: `Default ${kind} model` }));
      for (const model of found) {
        models.set(`${kind}:${model.id}`, model);
        group.append(el("option", { value: String(model.id), "data-kind": kind, text: String(model.id) }));
      }
      select.append(group);
    }
    const saved = readStore(MODEL_STORE);
    const option = [...select.options].find((o) => `${o.dataset.kind}:${o.value}` === saved);
    if (option) option.selected = true;
    modelChanged();
  }
  function chosen() {
    const option = $("model").selectedOptions[0];
    return { kind: option ? option.dataset.kind : "image", model: option ? option.value : "" };
  }
  function modelChanged() {
    const { kind, model } = chosen();
    const size = $("size");
    const previous = size.value;
    size.replaceChildren(...SIZES[kind].map(([value, label]) => el("option", { value, text: label })));
    if ([...size.options].some((o) => o.value === previous)) size.value = previous;
    $("count-choice").hidden = kind !== "image";
    $("seconds-choice").hidden = kind !== "video";
    const info = models.get(`${kind}:${model}`);
    if (info && Array.isArray(info.providers)) $("model-hint").textContent = "Providers: " + info.providers.join(", ");
    else if (info) $("model-hint").textContent = "";
  }
  $("model").addEventListener("change", () => {
    modelChanged();
    const { kind, model } = chosen();
    writeStore(MODEL_STORE, `${kind}:${model}`);
  });

  // ---- Generations -------------------------------------------------------------------------------

  /** A placeholder in the list of this tab's generations: progress, then the media or an error. */
  function placeholder(prompt, kind) {
    const thumb = el("div", { class: "thumb" });
    const status = el("p", { class: "status", role: "status", text: "Sending…" });
    const progress = el("progress", { max: 100, "aria-label": `Progress of the ${kind}` });
    const meta = el("p", { class: "meta" });
    const card = el("li", { class: "card pending", "aria-busy": "true", "data-kind": kind },
      thumb, el("div", { class: "caption" }, el("p", { class: "prompt", text: prompt }), status, progress, meta));
    const jobs = $("jobs");
    jobs.prepend(card);
    while (jobs.children.length > MAX_JOBS) jobs.lastElementChild.remove();
    return {
      card,
      finished: false,
      progress(percent, words) {
        if (typeof percent === "number" && percent >= 0) progress.value = Math.min(100, percent);
        if (words) status.textContent = words;
      },
      show(media, item) {
        this.finished = true;
        thumb.replaceChildren(el("a", { class: "open", href: item.url || "#", "aria-label": `Open: ${item.prompt}` }, media));
        thumb.firstChild.addEventListener("click", (event) => { event.preventDefault(); openViewer(item); });
        progress.value = 100;
        progress.hidden = true;
        status.textContent = "Done";
        meta.textContent = describe(item);
        card.classList.remove("pending");
        card.removeAttribute("aria-busy");
        card.dataset.state = "done";
      },
      fail(message) {
        if (this.finished) return;
        this.finished = true;
        progress.hidden = true;
        status.textContent = message;
        status.classList.add("error");
        card.classList.remove("pending");
        card.removeAttribute("aria-busy");
        card.dataset.state = "failed";
      },
    };
  }
  function describe(item) {
    const parts = [text(item.model), text(item.provider)].filter(Boolean);
    if (item.seed !== null && item.seed !== undefined) parts.push("seed " + text(item.seed));
    return parts.join(" · ");
  }

  /** Reads server-sent events from a fetch() answer, calling `on(event, data)` for each. */
  async function readEvents(response, on) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let event = "message";
    let data = [];
    const line = (l) => {
      if (l === "") {
        if (data.length) on(event, data.join("\n"));
        event = "message";
        data = [];
      } else if (!l.startsWith(":")) {
        const colon = l.indexOf(":");
        const field = colon < 0 ? l : l.slice(0, colon);
        let value = colon < 0 ? "" : l.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") event = value;
        else if (field === "data") data.push(value);
      }
    };
    for (;;) {
      const { value, done } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n")) >= 0) {
        line(buffer.slice(0, end).replace(/\r$/, ""));
        buffer = buffer.slice(end + 1);
      }
      if (done) break;
    }
    if (buffer) line(buffer);
    line("");
  }

  async function generateImages(prompt, model, size, n) {
    const cards = Array.from({ length: n }, () => placeholder(prompt, "image"));
    const pending = () => cards.filter((c) => !c.finished);
    const cardFor = (index) => (Number.isInteger(index) && cards[index] && !cards[index].finished ? cards[index] : pending()[0]);
    let response;
    try {
      response = await api("/v1/images/generations", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
        body: JSON.stringify({ prompt, model: model || undefined, n, size, stream: true, partial_images: 1 }),
      });
    } catch (error) {
      cards.forEach((c) => c.fail("The server could not be reached: " + error.message));
      return;
    }
    if (!response.ok) {
      const message = await errorOf(response);
      cards.forEach((c) => c.fail(message));
      return;
    }
    cards.forEach((c) => c.progress(5, "Accepted"));
    try {
      await readEvents(response, (event, data) => {
        if (data === "[DONE]") return;
        let body;
        try { body = JSON.parse(data); } catch { return; }
        const type = String(body.type || event);
        if (type.endsWith(".partial_image")) {
          const card = cardFor(body.index);
          const where = body.provider ? ` on ${body.provider}` : "";
          const words = { queued: "Queued", in_progress: "Generating", completed: "Finishing" }[body.status] || text(body.status);
          if (card) card.progress(body.progress, words + where);
        } else if (type.endsWith(".completed")) {
          const card = cardFor(body.index);
          if (!card) return;
          const format = /^[a-z]+$/.test(body.output_format || "") ? body.output_format : "png";
          const url = safeUrl(body.url) || (body.b64_json ? `data:image/${format};base64,${body.b64_json}` : "");
          const record = Object.assign({}, body);
          delete record.b64_json;
          const item = { kind: "image", url, prompt, model: body.model, provider: body.provider, seed: body.seed, record };
          card.show(el("img", { src: url, alt: prompt, decoding: "async" }), item);
        } else if (type === "error" || event === "error") {
          const error = body.error || {};
          const message = text(error.message) || "The generation failed";
          if (Number.isInteger(error.index) && cards[error.index]) cards[error.index].fail(message);
          else pending().forEach((c) => c.fail(message));
        }
      });
    } catch (error) {
      pending().forEach((c) => c.fail("The stream broke off: " + error.message));
    }
    pending().forEach((c) => c.fail("No image came back for this one."));
    refreshGallery();
  }

  async function generateVideo(prompt, model, size, seconds) {
    const card = placeholder(prompt, "video");
    const fail = (message) => card.fail(message);
    let response;
    try {
      response = await api("/v1/videos", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ prompt, model: model || undefined, seconds, size: size === "auto" ? undefined : size }),
      });
      if (!response.ok) return fail(await errorOf(response));
      let video = await response.json();
      while (video.status === "queued" || video.status === "in_progress") {
        card.progress(video.progress, video.status === "queued" ? "Queued" : "Generating");
        const wait = Number(response.headers.get("openai-poll-after-ms")) || 1000;
        await sleep(Math.min(5000, Math.max(200, wait)));
        response = await api(`/v1/videos/${encodeURIComponent(video.id)}`);
        if (!response.ok) return fail(await errorOf(response));
        video = await response.json();
      }
      if (video.status !== "completed") {
        return fail((video.error && text(video.error.message)) || `The video ${text(video.status) || "failed"}.`);
      }
      card.progress(100, "Loading the video");
      let url = `/v1/videos/${encodeURIComponent(video.id)}/content`;
      if (state.key) {
        // A <video> cannot send the key: the bytes come with fetch() and play from a blob: URL.
        const content = await api(url);
        if (!content.ok) return fail(await errorOf(content));
        url = URL.createObjectURL(await content.blob());
      }
      const item = { kind: "video", url: new URL(url, location.href).href, prompt, model: video.model, provider: video.provider, seed: video.seed, record: video };
      card.show(videoElement(item.url, { autoplay: true, controls: true, loop: true }), item);
      refreshGallery();
    } catch (error) {
      fail("The video could not be made: " + error.message);
    }
  }

  /** A muted, inline <video> of `url`; a note instead when this browser plays no H.264 MP4. */
  function videoElement(url, options) {
    const video = el("video", {
      src: url,
      muted: true,
      playsinline: true,
      preload: options.preload || "auto",
      controls: options.controls,
      autoplay: options.autoplay,
      loop: options.loop,
      "aria-label": options.label,
    });
    video.muted = true;
    if (!video.canPlayType(H264)) video.title = "This browser cannot play H.264 MP4 video: open the file instead.";
    return video;
  }

  $("generate-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const prompt = $("prompt").value.trim();
    if (!prompt) {
      $("prompt").focus();
      return;
    }
    const { kind, model } = chosen();
    const size = $("size").value;
    if (kind === "video") generateVideo(prompt, model, size, $("seconds").value);
    else generateImages(prompt, model, size, Number($("count").value) || 1);
  });

  // ---- The gallery -------------------------------------------------------------------------------

  async function loadGallery(page) {
    const ticket = ++state.listing;
    const note = $("gallery-note");
    let body;
    try {
      const response = await api(`/gallery/media?page=${page}&per_page=${PER_PAGE}`);
      if (!response.ok) {
        const message = await errorOf(response);
        if (ticket !== state.listing) return;
        note.textContent = message;
        note.classList.add("error");
        return;
      }
      body = await response.json();
    } catch (error) {
      if (ticket !== state.listing) return;
      note.textContent = "The gallery could not be loaded: " + error.message;
      note.classList.add("error");
      return;
    }
    if (ticket !== state.listing) return;
    state.page = body.page || page;
    note.classList.remove("error");
    const items = Array.isArray(body.data) ? body.data : [];
    note.textContent = items.length ? "" : state.page > 1 ? "No media on this page." : "No media yet: generate some above.";
    $("gallery").replaceChildren(...items.map(tile));
    const pages = Math.max(1, Math.ceil((body.total || 0) / (body.per_page || PER_PAGE)));
    $("page-label").textContent = `Page ${state.page} of ${pages}`;
    $("gallery-count").textContent = `${body.total || 0} in the output folder`;
    $("newer").disabled = state.page <= 1;
    $("older").disabled = !body.has_more;
  }
  function refreshGallery() {
    if (state.page === 1) loadGallery(1);
  }
  function tile(item) {
    const url = safeUrl(item.url);
    const prompt = text(item.prompt);
    const video = item.kind === "video";
    const media = video
      ? videoElement(url, { preload: "metadata", label: prompt })
      : el("img", { src: url, alt: prompt, loading: "lazy", decoding: "async" });
    const link = el("a", { class: "open", href: url || "#", "aria-label": `Open the ${video ? "video" : "image"}: ${prompt}` },
      el("div", { class: "thumb" }, media, video ? el("span", { class: "badge", "aria-hidden": "true", text: "▶ video" }) : null),
      el("div", { class: "caption" }, el("p", { class: "prompt", text: prompt }), el("p", { class: "meta", text: describe(item) })));
    link.addEventListener("click", (event) => {
      event.preventDefault();
      openViewer(item);
    });
    return el("li", { class: "card", "data-kind": video ? "video" : "image", "data-name": text(item.name) }, link);
  }
  $("newer").addEventListener("click", () => loadGallery(Math.max(1, state.page - 1)));
  $("older").addEventListener("click", () => loadGallery(state.page + 1));

  // ---- The viewer --------------------------------------------------------------------------------

  const viewer = $("viewer");
  function openViewer(item) {
    const url = safeUrl(item.url);
    const video = item.kind === "video";
    $("viewer-title").textContent = video ? "Video" : "Image";
    $("viewer-media").replaceChildren(video
      ? videoElement(url, { controls: true, autoplay: true, loop: true, label: text(item.prompt) })
      : el("img", { src: url, alt: text(item.prompt) }));
    const facts = [["Prompt", item.prompt], ["Model", item.model], ["Provider", item.provider], ["Seed", item.seed]];
    if (item.created) facts.push(["Created", new Date(Number(item.created) * 1000).toLocaleString()]);
    if (item.name) facts.push(["File", item.name]);
    $("viewer-facts").replaceChildren(...facts
      .filter(([, value]) => value !== null && value !== undefined && value !== "")
      .flatMap(([name, value]) => [el("dt", { text: name }), el("dd", { text: text(value) })]));
    const link = $("viewer-link");
    link.href = url || "#";
    link.hidden = !url;
    $("viewer-record").textContent = JSON.stringify(item.record || {}, null, 2);
    if (!viewer.open) viewer.showModal();
  }
  function closeViewer() {
    for (const media of viewer.querySelectorAll("video")) media.pause();
    viewer.close();
  }
  $("viewer-close").addEventListener("click", closeViewer);
  viewer.addEventListener("click", (event) => {
    if (event.target === viewer) closeViewer();
  });
  viewer.addEventListener("close", () => $("viewer-media").replaceChildren());

  // ---- Start -------------------------------------------------------------------------------------

  async function loadAll() {
    await Promise.all([loadModels(), loadGallery(1)]);
  }
  async function start() {
    showKeyState();
    modelChanged();
    if (keyRequired && !state.key) await askKey("This server needs an API key.");
    await loadAll();
    document.documentElement.dataset.ready = "true";
  }
  start();
})();
