// The live gallery: polls the feed for clips newer than the cursor and prepends their cards,
// and takes off those an admin hid. Until the first clip, the page says how to join.
// Text goes in with textContent only; a video source must be http(s) or relative to the page.
"use strict";
(() => {
  const list = document.querySelector(".rw-clips");
  const status = document.querySelector(".rw-status");
  const empty = document.querySelector(".rw-empty");
  const join = document.querySelector(".rw-join"); // how to join: until the first clip
  const queue = document.querySelector(".rw-queue");
  const feed = list.dataset.feed;
  const pollMs = Number(list.dataset.pollMs) || 1500;
  const headers = list.dataset.xsrf ? { "X-XSRFToken": list.dataset.xsrf } : {};
  const shown = new Set();
  let cursor = "";

  // Only cards near the viewport fetch video data; the rest stay at preload="none".
  const nearby = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (entry.isIntersecting) {
        entry.target.preload = "metadata";
        nearby.unobserve(entry.target);
      }
    }
  }, { rootMargin: "300px" });

  function safeSource(url) {
    try {
      const parsed = new URL(url, document.baseURI);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
    } catch (error) {
      return null;
    }
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function card(clip) {
    const item = element("li", "rw-clip");
    item.dataset.clip = clip.id;
    const source = safeSource(clip.video_url);
    if (source) {
      const video = element("video");
      video.controls = true;
      video.muted = true;
      video.loop = true;
      video.playsInline = true;
      video.preload = "none";
      video.src = source;
      item.append(video);
      nearby.observe(video);
    }
    const body = element("div", "rw-body");
    body.append(element("p", "rw-prompt", clip.prompt || ""));
    body.append(element("p", "rw-who", clip.participant || ""));
    const settings = element("ul", "rw-settings");
    for (const pair of clip.settings || []) {
      settings.append(element("li", "", `${pair[0]}: ${pair[1]}`));
    }
    body.append(settings);
    item.append(body);
    item.dataset.shownAt = String(Date.now());
    return item;
  }

  // The feed lists clips newest first, and every clip in a reply is newer than the cards
  // on the page: prepending the batch as it is keeps the whole list newest first.
  function add(clips, highlight) {
    const fresh = clips.filter((clip) => clip && clip.id && !shown.has(clip.id));
    const cards = fresh.map((clip) => { shown.add(clip.id); return card(clip); });
    if (highlight) {
      for (const item of cards) {
        item.classList.add("rw-new");
        setTimeout(() => item.classList.remove("rw-new"), 8000);
      }
    }
    list.prepend(...cards);
    showEmpty();
  }

  // Clips an admin hid since the cursor: off the page (they come back if shown again).
  function remove(ids) {
    for (const id of ids) {
      if (typeof id !== "string" || !shown.has(id)) continue;
      shown.delete(id);
      for (const item of list.querySelectorAll("li.rw-clip")) {
        if (item.dataset.clip === id) item.remove();
      }
    }
    showEmpty();
  }

  function showEmpty() {
    empty.hidden = shown.size > 0;
    if (join) join.hidden = shown.size > 0;
  }

  // "queue: 12 waiting · longest wait 0:42" while jobs wait for the upstream
  function showQueue(state) {
    const waiting = state && Number.isInteger(state.queued) ? state.queued : 0;
    queue.hidden = waiting === 0;
    if (waiting === 0) return;
    let text = `queue: ${waiting} waiting`;
    const wait = Number(state.oldest_wait);
    if (Number.isFinite(wait)) {
      const seconds = Math.floor(wait);
      text += ` · longest wait ${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
    }
    queue.textContent = text;
  }

  function say(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  async function poll(loaded) {
    const url = cursor ? `${feed}?since=${encodeURIComponent(cursor)}` : feed;
    try {
      const reply = await fetch(url, { credentials: "same-origin", cache: "no-store", headers });
      if (reply.status === 401 || reply.status === 403) {
        say("signed-out", "signed out: reload the page to sign in again");
        return;
      }
      if (!reply.ok) throw new Error(`HTTP ${reply.status}`);
      const data = await reply.json();
      add(Array.isArray(data.clips) ? data.clips : [], loaded);
      remove(Array.isArray(data.removed) ? data.removed : []);
      loaded = true;
      if (typeof data.cursor === "string") cursor = data.cursor;
      showQueue(data.queue);
      say("live", `live · ${shown.size} clip${shown.size === 1 ? "" : "s"}`);
    } catch (error) {
      say("offline", "cannot reach the gateway: retrying");
    }
    setTimeout(() => poll(loaded), pollMs);
  }

  poll(false);
})();
