// The incident player: appends each stored segment to a MediaSource on a timeline from 0,
// marks the press and the pre-/post-roll on a bar, and while the incident records reads the
// plan again every second, follows new segments and says how far behind the wearer it is.
"use strict";
(function () {
  const root = document.getElementById("footage");
  if (!root) return;
  const video = document.getElementById("video");
  const state = document.getElementById("player-state");
  const retry = document.getElementById("player-retry");
  const goLive = document.getElementById("go-live");
  const bar = document.getElementById("bar");
  const clock = document.getElementById("player-clock");
  const legend = document.getElementById("bar-legend");
  const base = root.dataset.base;
  const AHEAD_S = 60; // fetch this far ahead of the playhead
  const LIVE_S = 12; // within this of the wearer, the player calls itself live
  const POLL_MS = 1000;
  const FAST_MS = 250;
  const RETRY_MS = 2000;

  let plan = null;
  let planAt = 0; // performance.now() when the plan was read
  let source = null;
  let buffer = null;
  let appended = new Set();
  let fetching = false;
  let broken = null; // the last error, shown until the next success
  let timer = null;

  function say(text, kind) {
    state.textContent = text;
    state.className = "player-state " + (kind || "");
    root.dataset.state = kind || "";
  }

  function clockText(seconds) {
    const whole = Math.max(0, Math.floor(seconds + 0.05));
    const m = Math.floor(whole / 60);
    const s = String(whole % 60).padStart(2, "0");
    return `${m}:${s}`;
  }

  async function getJson(url) {
    const answer = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    const body = await answer.json().catch(() => ({}));
    if (!answer.ok) throw new Error(body.error || `the console answered ${answer.status}`);
    return body;
  }

  async function readPlan() {
    const fresh = await getJson(base + "/plan");
    if (plan && fresh.origin !== plan.origin) {
      // earlier footage arrived: the timeline's 0 moved, so start again from it
      restart("Earlier footage has arrived; the timeline starts again from it.");
    }
    plan = fresh;
    planAt = performance.now();
    drawBar();
  }

  function restart(message) {
    appended = new Set();
    buffer = null;
    source = null;
    video.removeAttribute("src");
    video.load();
    if (message) say(message, "wait");
  }

  function openSource(codecs) {
    const kind = `video/mp4; codecs="${codecs}"`;
    if (!MediaSource.isTypeSupported(kind)) throw new Error(`this browser cannot play ${kind}`);
    source = new MediaSource();
    const opened = new Promise((resolve) => source.addEventListener("sourceopen", resolve, { once: true }));
    video.src = URL.createObjectURL(source);
    return opened.then(() => {
      buffer = source.addSourceBuffer(kind);
      buffer.mode = "segments"; // the server placed every segment on the timeline already
    });
  }

  function append(data) {
    return new Promise((resolve, reject) => {
      buffer.addEventListener("updateend", resolve, { once: true });
      buffer.addEventListener("error", () => reject(new Error("the browser refused a segment")), { once: true });
      buffer.appendBuffer(data);
    });
  }

  function nextSegment() {
    const now = video.currentTime || 0;
    return plan.segments.find((s) => !appended.has(s.seq) && s.end > now - 1 && s.start < now + AHEAD_S);
  }

  async function pump() {
    if (fetching || !plan || plan.origin === null) return;
    const wanted = nextSegment();
    if (!wanted) return;
    fetching = true;
    try {
      const answer = await fetch(`${base}/${plan.origin}/${wanted.seq}`, { credentials: "same-origin", cache: "no-store" });
      if (!answer.ok) {
        const body = await answer.json().catch(() => ({}));
        throw new Error(body.error || `segment ${wanted.seq}: the console answered ${answer.status}`);
      }
      const data = await answer.arrayBuffer();
      if (!buffer) await openSource(answer.headers.get("x-codecs") || "avc1.42E01E,mp4a.40.2");
      await append(data);
      appended.add(wanted.seq);
      root.dataset.appended = String(appended.size);
      growDuration();
      broken = null;
      if (video.paused && video.autoplay) video.play().catch(() => {});
    } catch (error) {
      broken = error.message;
      console.warn("footage:", broken);
    } finally {
      fetching = false;
    }
    if (!broken) pump();
  }

  function growDuration() {
    if (!source || !buffer || source.readyState !== "open" || buffer.updating) return;
    const end = Math.max(plan.end, ...Array.from({ length: buffer.buffered.length }, (_, i) => buffer.buffered.end(i)));
    // the fragments carry no length (Infinity): the stored footage's end makes it seekable
    if (!(source.duration >= end) || source.duration === Infinity) source.duration = end;
    const done = !plan.recording && plan.missing.length === 0 && plan.segments.every((s) => appended.has(s.seq));
    if (done) source.endOfStream();
  }

  function behindSeconds() {
    if (!plan || plan.newest_wall_ns === null) return null;
    const nowNs = plan.now_ns + (performance.now() - planAt) * 1e6;
    const lag = (nowNs - plan.newest_wall_ns) / 1e9; // how old the newest stored footage is
    return Math.max(0, lag + (plan.end - video.currentTime));
  }

  function gapAhead() {
    // the playhead sits where nothing is buffered: a segment not stored yet, or not fetched
    const now = video.currentTime;
    const ranges = video.buffered;
    for (let i = 0; i < ranges.length; i++) {
      if (now >= ranges.start(i) - 0.05 && now < ranges.end(i) - 0.1) return null;
    }
    return plan.segments.find((s) => s.start > now) || null;
  }

  function report() {
    if (!plan) return;
    clock.textContent = `${clockText(video.currentTime)} / ${clockText(plan.end)}`;
    goLive.hidden = true;
    retry.hidden = !broken;
    if (broken) return say(`${broken}. Trying again…`, "error");
    if (plan.origin === null) {
      return say(plan.recording ? "No footage has reached the gateway yet; the badge is uploading it. Trying again…"
        : "No footage of this incident is stored.", plan.recording ? "wait" : "error");
    }
    const gap = video.readyState < 3 ? gapAhead() : null;
    if (plan.recording) {
      const behind = behindSeconds();
      const lag = behind === null ? "" : ` — ${Math.round(behind)} s behind`;
      if (gap === null && video.currentTime >= plan.end - 0.5) {
        return say(`live${lag}: waiting for the next segment from the badge…`, "live");
      }
      if (behind !== null && behind <= LIVE_S) return say(`live${lag}`, "live");
      goLive.hidden = false;
      return say(`recording${lag} the wearer`, "recording");
    }
    if (gap === null && plan.missing.length && video.currentTime >= plan.end - 0.5) {
      return say(`${plan.missing.length} segments have not reached the gateway yet; they play when they do.`, "wait");
    }
    say(`recorded: ${clockText(plan.end)} in ${plan.segments.length} segments`, "done");
  }

  function skipGap() {
    // a segment that is not stored leaves a hole: after a moment, play on past it
    if (!plan || video.paused || video.readyState >= 3) return;
    const following = gapAhead();
    if (following && appended.has(following.seq) && !plan.segments.some((s) => s.start <= video.currentTime && s.end > video.currentTime)) {
      video.currentTime = following.start + 0.01;
    }
  }

  function mark(kind, left, width, title) {
    const part = document.createElement("div");
    part.className = kind;
    part.style.left = `${left}%`;
    if (width !== null) part.style.width = `${width}%`;
    part.title = title;
    bar.append(part);
  }

  function drawBar() {
    bar.replaceChildren();
    const span = Math.max(plan.end, 0.001);
    const at = (seconds) => Math.min(100, (100 * seconds) / span);
    const press = plan.pre_roll_end;
    if (press !== null) {
      mark("part pre", 0, at(press), "pre-roll: before the press");
      mark("part post", at(press), at(Math.max(plan.end, press)) - at(press), "post-roll: after the press");
    } else {
      mark("part post", 0, at(plan.end), "footage");
    }
    for (let i = 1; i < plan.segments.length; i++) {
      const before = plan.segments[i - 1];
      const gap = plan.segments[i].start - before.end;
      if (gap > 0.1) mark("part gap", at(before.end), at(gap), "not at the gateway yet");
    }
    plan.presses.forEach((seconds, i) => mark("press", at(seconds), null, `press ${i + 1} at ${clockText(seconds)}`));
    mark("playhead", at(video.currentTime || 0), null, "now playing");
    bar.dataset.span = String(span);
    const parts = [];
    if (press !== null) {
      parts.push(`pre-roll 0:00–${clockText(press)}`, `press at ${clockText(press)}`);
      parts.push(`post-roll ${clockText(press)}–${clockText(plan.end)}${plan.recording ? " so far, recording" : ""}`);
    } else {
      parts.push(plan.origin === null ? "nothing stored yet" : `${clockText(plan.end)} stored`);
    }
    if (plan.missing.length) parts.push(`${plan.missing.length} segments not stored yet`);
    legend.textContent = parts.join(" · ");
  }

  function movePlayhead() {
    const head = bar.querySelector(".playhead");
    if (head && plan) head.style.left = `${Math.min(100, (100 * video.currentTime) / Number(bar.dataset.span))}%`;
  }

  function needsPlan() {
    return !plan || plan.recording || plan.missing.length > 0 || plan.origin === null || broken !== null;
  }

  function nextPollMs() {
    // nothing stored yet, or the playhead waits at the newest segment: look again soon
    if (plan.origin === null || (plan.recording && video.currentTime >= plan.end - 0.5)) return FAST_MS;
    return needsPlan() ? POLL_MS : 5 * POLL_MS;
  }

  async function tick() {
    clearTimeout(timer);
    try {
      if (needsPlan()) await readPlan();
      broken = null;
    } catch (error) {
      broken = error.message;
    }
    if (!broken) await pump();
    growDuration();
    report();
    if (broken && broken.includes("grant has expired")) {
      retry.hidden = true;
      return say("Your view has expired: reload the page and state why you view it again.", "error");
    }
    timer = setTimeout(tick, broken ? RETRY_MS : nextPollMs());
  }

  function seekBar(event) {
    if (!plan) return;
    const box = bar.getBoundingClientRect();
    const seconds = ((event.clientX - box.left) / box.width) * Number(bar.dataset.span);
    video.currentTime = Math.max(0, Math.min(seconds, plan.end - 0.05));
    video.play().catch(() => {});
  }

  if (!("MediaSource" in window)) {
    // no MediaSource (an older phone): the whole stored clip as one stream, without following
    video.src = root.dataset.stream;
    say("This browser plays the stored footage as one clip; reload to see newer segments.", "done");
    return;
  }
  video.addEventListener("timeupdate", () => { movePlayhead(); report(); pump(); });
  video.addEventListener("seeking", () => pump());
  video.addEventListener("waiting", () => setTimeout(skipGap, 1500));
  video.addEventListener("error", () => {
    broken = "the browser could not play this footage";
    restart();
    report();
  });
  bar.addEventListener("click", seekBar);
  retry.addEventListener("click", () => { broken = null; tick(); });
  goLive.addEventListener("click", () => {
    if (plan) video.currentTime = Math.max(0, plan.end - 1);
    video.play().catch(() => {});
  });
  say("Loading the footage…", "wait");
  tick();
})();
