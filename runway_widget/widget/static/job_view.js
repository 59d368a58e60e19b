// One job of the panel: a row (or gallery tile) that opens into a player.
// Every text goes in with textContent; only http(s) URLs become a src or href.
const isHttp = (u) => typeof u === "string" && /^https?:\/\/[^\s]/i.test(u);

function bytesUrl(value, type, old) {
  if (old) URL.revokeObjectURL(old);
  if (!value || !value.byteLength) return "";
  const view = value.buffer ? new Uint8Array(value.buffer, value.byteOffset, value.byteLength) : value;
  return URL.createObjectURL(new Blob([view], { type }));
}

function make(tag, cls, parent) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (parent) parent.appendChild(node);
  return node;
}

const BUTTONS = [
  ["save", "Save", "Save the video into the download folder"],
  ["use", "Use as input", "Restyle this video: fills the form as video → video"],
  ["retry", "Try again", "Submit the same request again"],
  ["cancel", "Cancel", "Withdraw this job from the gateway's queue: its quota is given back"],
  ["code", "Show code", "The same job as a Python requests call"],
];

function render({ model, el }) {
  const send = (action) => model.send({ action });
  const root = make("div", "rw-job", el);
  const row = make("div", "rw-job-row", root);
  const toggle = make("button", "rw-job-toggle", row);
  toggle.type = "button";
  const thumb = make("div", "rw-job-thumb", row);
  const text = make("div", "rw-job-text", row);
  const prompt = make("div", "rw-job-prompt", text);
  const meta = make("div", "rw-job-meta", text);
  const status = make("div", "rw-job-status", row);
  const bar = make("div", "rw-job-bar", root);
  bar.setAttribute("role", "progressbar");
  bar.setAttribute("aria-valuemin", "0");
  bar.setAttribute("aria-valuemax", "100");
  const fill = make("div", "rw-job-bar-fill", bar);
  const message = make("div", "rw-job-message", root);
  const player = make("div", "rw-job-player", root);
  const actions = make("div", "rw-job-actions", root);
  const buttons = {};
  for (const [name, label, tip] of BUTTONS) {
    const button = make("button", `rw-job-action rw-job-btn-${name}`, actions);
    button.type = "button";
    button.textContent = label;
    button.title = tip;
    button.addEventListener("click", () => (name === "save" && model.get("dashboard") ? download() : send(name)));
    buttons[name] = button;
  }
  const link = make("a", "rw-job-link", actions);
  link.target = "_blank";
  link.rel = "noopener noreferrer";
  link.textContent = "open video ↗";
  const saved = make("span", "rw-job-saved", actions);
  const code = make("pre", "rw-job-code", root);
  let videoUrl = "";
  let posterUrl = "";
  let video = null;
  let wantDownload = false;

  const flip = () => send(model.get("opened") ? "close" : "open");
  toggle.addEventListener("click", flip);
  thumb.addEventListener("click", () => { if (model.get("status") === "finished") flip(); });

  function download() {
    const src = videoUrl || (isHttp(model.get("video_src")) ? model.get("video_src") : "");
    if (!src) {
      wantDownload = true;
      send("open");
      return;
    }
    const a = make("a", "", null);
    a.href = src;
    a.download = model.get("filename") || "video.mp4";
    document.body.appendChild(a);
    a.click();
    a.remove();
  }

  function showPlayer() {
    const opened = model.get("opened");
    const remote = model.get("video_src");
    const note = model.get("note");
    const src = videoUrl || (isHttp(remote) ? remote : "");
    player.replaceChildren();
    video = null;
    if (opened && src) {
      video = make("video", "rw-job-video", player);
      video.controls = true;
      video.preload = "metadata";
      video.src = src;
      if (wantDownload) {
        wantDownload = false;
        download();
      }
    } else if (opened && note) {
      const line = make("div", model.get("note_is_error") ? "rw-error" : "rw-muted", player);
      line.textContent = note;
    } else if (opened) {
      make("div", "rw-muted", player).textContent = "loading the video…";
    }
  }

  function showPoster() {
    posterUrl = bytesUrl(model.get("poster"), "image/jpeg", posterUrl);
    thumb.replaceChildren();
    if (posterUrl) {
      const img = make("img", "", thumb);
      img.alt = "";
      img.src = posterUrl;
    }
  }

  function update() {
    const state = model.get("status");
    const opened = model.get("opened");
    root.className = `rw-job rw-job-${state}` + (opened ? " rw-job-open" : "") + (posterUrl ? " rw-job-has-poster" : "");
    prompt.textContent = model.get("prompt");
    prompt.title = model.get("prompt");
    meta.textContent = model.get("summary");
    status.textContent = model.get("label");
    const pct = Math.max(0, Math.min(100, model.get("progress") || 0));
    fill.style.width = `${pct}%`;
    bar.setAttribute("aria-valuenow", String(Math.round(pct)));
    bar.setAttribute("aria-label", `progress of ${model.get("task_id")}`);
    toggle.hidden = state === "running";
    toggle.textContent = opened ? "▾ Close" : "▸ Play";
    toggle.setAttribute("aria-expanded", String(opened));
    toggle.title = opened ? "Close the player (drops its bytes)" : "Open the player";
    message.textContent = model.get("message");
    message.hidden = !model.get("message");
    const allowed = model.get("actions");
    for (const [name, button] of Object.entries(buttons)) button.hidden = !allowed.includes(name);
    buttons.code.textContent = model.get("code") ? "Hide code" : "Show code";
    buttons.save.textContent = model.get("dashboard") ? "Download" : model.get("saved").startsWith("saved") ? "Saved" : "Save";
    const href = model.get("link");
    link.hidden = !isHttp(href);
    if (isHttp(href)) link.href = href; else link.removeAttribute("href");
    const note = model.get("save_error") || (model.get("dashboard") ? "" : model.get("saved"));
    saved.textContent = note;
    saved.className = "rw-job-saved " + (model.get("save_error") ? "rw-error" : "rw-muted");
    code.textContent = model.get("code");
    code.hidden = !model.get("code");
  }

  const loadVideo = () => { videoUrl = bytesUrl(model.get("video"), "video/mp4", videoUrl); };
  showPoster();
  loadVideo();
  showPlayer();
  update();
  model.on("change:poster", () => { showPoster(); update(); });
  model.on("change:video", () => { loadVideo(); showPlayer(); });
  model.on("change:video_src change:note change:note_is_error change:opened", showPlayer);
  model.on("change", update);
  return () => {
    if (videoUrl) URL.revokeObjectURL(videoUrl);
    if (posterUrl) URL.revokeObjectURL(posterUrl);
  };
}

export default { render };
