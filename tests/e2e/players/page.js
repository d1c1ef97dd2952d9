// Runs inside the test page: creates a <video>, attaches the chosen player to the media URL and
// records what happens in window.__hw, which play.mjs reads through Playwright.
//
// The configuration comes in the page's query string as JSON:
//   {"player": "hls.js" | "dash.js" | "shaka", "url": "...", "live": true|false|null,
//    "lowLatency": bool, "start": number|null, "config": {...player-specific settings...}}
// (for dash.js, config.protection goes to setProtectionData: ClearKey keys and license URLs)
//
// "start" is where playback starts on the player's currentTime axis, null for the player's own
// choice: hls.js `startPosition` (seconds from the start of the first playlist it loads), dash.js
// `initialize(..., startTime)` (seconds since MPD@availabilityStartTime), Shaka `load(url, startTime)`
// (its presentation time; for DASH also since availabilityStartTime).
//
// "clock": true reads a wall-clock code burned into every frame (bench/latency.py makes it) and
// records glass-to-glass latency per displayed frame: see CLOCK below and hw.clockSamples().
'use strict';

(() => {
  const cfg = JSON.parse(new URLSearchParams(location.search).get('cfg'));
  const MAX_LOG = 300;
  const t0 = performance.now();
  const now = () => Math.round(performance.now() - t0) / 1000;

  const hw = {
    ready: false, // the player was created and given the URL
    playingSeen: false,
    startedAt: null, // page seconds at which currentTime first moved while playing
    errors: [],
    warnings: [],
    log: [],
    stalls: 0, // 'waiting' events after playback started
    seeks: 0, // 'seeking' events after playback started
    live: null,
    player: null,
  };
  window.__hw = hw;

  const note = (kind, detail) => {
    if (hw.log.length < MAX_LOG) hw.log.push({ t: now(), kind, ...(detail === undefined ? {} : { detail }) });
  };
  const error = (message) => {
    if (hw.errors.includes(message)) return;
    hw.errors.push(message);
    note('error', message);
  };
  const warning = (message) => {
    if (hw.warnings.length < MAX_LOG) hw.warnings.push(message);
    note('warning', message);
  };
  const finite = (x) => (typeof x === 'number' && Number.isFinite(x) ? x : null);
  const text = (x) => {
    if (x === undefined || x === null) return '';
    if (typeof x === 'string') return x;
    if (x instanceof Error) return `${x.name}: ${x.message}`;
    try {
      return JSON.stringify(x, (k, v) => (v instanceof XMLHttpRequest || v instanceof Node ? undefined : v)).slice(0, 500);
    } catch (e) {
      return String(x);
    }
  };

  window.addEventListener('error', (e) => error(`page error: ${e.message}`));
  window.addEventListener('unhandledrejection', (e) => error(`unhandled rejection: ${text(e.reason)}`));

  const video = document.createElement('video');
  video.muted = true;
  video.autoplay = true;
  video.playsInline = true;
  video.controls = true;
  video.width = 640;
  video.height = 360;
  document.body.appendChild(video);

  let playingTime = null;
  video.addEventListener('playing', () => {
    note('playing', { currentTime: video.currentTime });
    hw.playingSeen = true;
    if (playingTime === null) playingTime = video.currentTime;
  });
  video.addEventListener('timeupdate', () => {
    if (hw.startedAt === null && hw.playingSeen && !video.paused && video.currentTime > playingTime + 0.05) {
      hw.startedAt = now();
      note('started', { currentTime: video.currentTime });
    }
  });
  video.addEventListener('waiting', () => {
    note('waiting', { currentTime: video.currentTime });
    if (hw.startedAt !== null) hw.stalls += 1;
  });
  video.addEventListener('seeking', () => {
    note('seeking', { currentTime: video.currentTime });
    if (hw.startedAt !== null) hw.seeks += 1;
  });
  for (const name of ['loadedmetadata', 'canplay', 'pause', 'ended', 'ratechange', 'resize']) {
    video.addEventListener(name, () => note(name, { currentTime: video.currentTime }));
  }
  video.addEventListener('error', () => {
    const e = video.error;
    error(`video element error: code ${e ? e.code : '?'} ${e ? e.message : ''}`.trim());
  });

  const startPlayback = () => {
    const p = video.play();
    if (p) p.catch((e) => warning(`video.play() rejected: ${text(e)}`));
  };

  // Each player: create it, hook its error events, and expose live/latency/variant details.
  const players = {
    'hls.js': () => {
      const Hls = window.Hls;
      if (!Hls.isSupported()) throw new Error('hls.js: MSE not supported in this browser');
      const start = cfg.start === undefined || cfg.start === null ? {} : { startPosition: cfg.start };
      const hls = new Hls({ debug: false, lowLatencyMode: cfg.lowLatency, ...start, ...cfg.config });
      hls.on(Hls.Events.ERROR, (ev, data) => {
        const url = data.url || (data.frag && data.frag.url) || (data.context && data.context.url) || '';
        const status = data.response && data.response.code ? ` HTTP ${data.response.code}` : '';
        const reason = data.reason || (data.error && data.error.message) || '';
        const message = `hls.js ${data.fatal ? 'fatal ' : ''}${data.type}/${data.details}${status}${reason ? ': ' + reason : ''}${url ? ' ' + url : ''}`;
        (data.fatal ? error : warning)(message);
      });
      hls.on(Hls.Events.MANIFEST_PARSED, (ev, data) => {
        note('manifestParsed', { levels: data.levels.length });
        startPlayback();
      });
      hls.on(Hls.Events.LEVEL_LOADED, (ev, data) => {
        hw.live = data.details.live;
      });
      hls.attachMedia(video);
      hls.loadSource(cfg.url);
      hw.player = hls;
      return {
        latency: () => (hw.live ? finite(hls.latency) : null),
        variants: () =>
          (hls.levels || []).map((l) => ({
            bandwidth: l.bitrate || null,
            width: l.width || null,
            height: l.height || null,
            codecs: [l.videoCodec, l.audioCodec].filter(Boolean).join(','),
          })),
        current: () => (hls.currentLevel >= 0 ? hls.currentLevel : null),
        destroy: () => hls.destroy(),
      };
    },

    'dash.js': () => {
      const dashjs = window.dashjs;
      const player = dashjs.MediaPlayer().create();
      // A live MPD without UTCTiming makes dash.js ask a public time server by default: point
      // that default at play.mjs's /time instead (same clock; no traffic beyond loopback).
      const settings = {
        debug: { logLevel: dashjs.Debug.LOG_LEVEL_WARNING },
        streaming: {
          utcSynchronization: {
            defaultTimingSource: { scheme: 'urn:mpeg:dash:utc:http-iso:2014', value: `${location.origin}/time` },
          },
        },
      };
      if (cfg.lowLatency) settings.streaming.liveCatchup = { enabled: true };
      player.updateSettings(settings);
      // "protection" in the config is dash.js's protection data (e.g. ClearKey keys), not a setting.
      const { protection, ...dashSettings } = cfg.config || {};
      if (protection) player.setProtectionData(protection);
      if (Object.keys(dashSettings).length) player.updateSettings(dashSettings);
      const E = dashjs.MediaPlayer.events;
      player.on(E.ERROR, (e) => {
        const err = e.error;
        let message;
        if (err && typeof err === 'object') {
          message = `dash.js error ${err.code}: ${err.message || ''}`;
        } else {
          message = `dash.js error ${err}: ${text(e.event && (e.event.message || e.event.url || e.event))}`;
        }
        error(message.trim());
      });
      player.on(E.PLAYBACK_ERROR, (e) => error(`dash.js playback error: ${text(e.error && (e.error.message || e.error.code))}`));
      player.on(E.STREAM_INITIALIZED, () => {
        hw.live = player.isDynamic();
        note('streamInitialized', { live: hw.live });
        startPlayback();
      });
      player.initialize(video, cfg.url, true, cfg.start ?? NaN);
      hw.player = player;
      const reps = () => {
        try {
          return player.getRepresentationsByType('video') || [];
        } catch (e) {
          return [];
        }
      };
      return {
        latency: () => (hw.live ? finite(player.getCurrentLiveLatency()) : null),
        variants: () =>
          reps().map((r) => ({ bandwidth: r.bandwidth || null, width: r.width || null, height: r.height || null, codecs: r.codecs || '' })),
        current: () => {
          let cur = null;
          try {
            cur = player.getCurrentRepresentationForType('video');
          } catch (e) {
            return null;
          }
          const i = cur ? reps().findIndex((r) => r.id === cur.id) : -1;
          return i >= 0 ? i : null;
        },
        destroy: () => player.destroy(),
      };
    },

    shaka: () => {
      const shaka = window.shaka;
      shaka.polyfill.installAll();
      if (!shaka.Player.isBrowserSupported()) throw new Error('shaka: browser not supported');
      const codeNames = {};
      for (const [k, v] of Object.entries(shaka.util.Error.Code || {})) codeNames[v] = k;
      const describe = (e) => {
        const sev = e.severity === shaka.util.Error.Severity.CRITICAL ? 'critical' : 'recoverable';
        const data = e.data && e.data.length ? ' ' + text(e.data.map((d) => (typeof d === 'string' ? d.slice(0, 120) : (d && d.message) || d))) : '';
        return `shaka ${sev} error ${e.code}${codeNames[e.code] ? ' ' + codeNames[e.code] : ''} (category ${e.category})${data}`;
      };
      const player = new shaka.Player();
      player.configure({ streaming: { lowLatencyMode: cfg.lowLatency } });
      if (cfg.config && Object.keys(cfg.config).length) player.configure(cfg.config);
      player.addEventListener('error', (ev) => {
        const e = ev.detail;
        (e.severity === shaka.util.Error.Severity.CRITICAL ? error : warning)(describe(e));
      });
      hw.player = player;
      (async () => {
        await player.attach(video);
        await player.load(cfg.url, cfg.start ?? null);
        hw.live = player.isLive();
        note('loaded', { live: hw.live });
        startPlayback();
      })().catch((e) => error(e && e.code !== undefined ? describe(e) : `shaka load failed: ${text(e)}`));
      const tracks = () => player.getVariantTracks().filter((t) => t.videoId !== null || t.width);
      return {
        latency: () => (hw.live ? finite(player.getStats().liveLatency) : null),
        variants: () =>
          tracks().map((t) => ({
            bandwidth: t.bandwidth || null,
            width: t.width || null,
            height: t.height || null,
            codecs: t.codecs || '',
          })),
        current: () => {
          const i = tracks().findIndex((t) => t.active);
          return i >= 0 ? i : null;
        },
        destroy: () => player.destroy(),
      };
    },
  };

  let api = null;
  try {
    api = players[cfg.player]();
    hw.ready = true;
  } catch (e) {
    error(`${cfg.player} setup failed: ${text(e)}`);
  }

  // Clock strip (cfg.clock): the top-left CLOCK.bits * CLOCK.cell pixels wide, 2 * CLOCK.cell high,
  // of each frame carry the wall-clock milliseconds (modulo 2^32) at which the frame was captured:
  // CLOCK.bits cells of CLOCK.cell x CLOCK.cell pixels, most significant bit first, white = 1, and
  // below each one a cell with the complement (a frame whose cells are not complementary is
  // unreadable, not misread). On each displayed frame (requestVideoFrameCallback) the strip is drawn
  // into a canvas and decoded; latency = display time (wall clock) - capture time. Browser and
  // encoder run on one machine, so they share the clock.
  const CLOCK = { x: 0, y: 0, cell: 8, bits: 32, maxSamples: 200000 };
  const clock = { samples: [], frames: 0, method: null }; // samples: [wall ms, latency ms | null, media s]
  hw.clock = clock;
  if (cfg.clock) {
    const w = CLOCK.cell * CLOCK.bits;
    const h = CLOCK.cell * 2;
    const canvas = document.createElement('canvas');
    canvas.width = w;
    canvas.height = h;
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    const WRAP = 4294967296;
    // The mean luma of the middle half of a cell, 0..255.
    const cellLuma = (data, cx, cy) => {
      const q = CLOCK.cell / 4;
      let sum = 0;
      let n = 0;
      for (let y = cy * CLOCK.cell + q; y < (cy + 1) * CLOCK.cell - q; y++) {
        for (let x = cx * CLOCK.cell + q; x < (cx + 1) * CLOCK.cell - q; x++) {
          const i = (y * w + x) * 4;
          sum += 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
          n += 1;
        }
      }
      return sum / n;
    };
    let last = null; // the code of the previous sample (the polling fallback sees frames twice)
    const record = (displayWall, latency, mediaTime) => {
      if (clock.samples.length < CLOCK.maxSamples) clock.samples.push([Math.round(displayWall), latency, mediaTime]);
    };
    // The code in the displayed frame, or null when the strip does not read.
    const read = () => {
      let data;
      try {
        ctx.drawImage(video, CLOCK.x, CLOCK.y, w, h, 0, 0, w, h);
        data = ctx.getImageData(0, 0, w, h).data;
      } catch (e) {
        return null;
      }
      let code = 0;
      for (let b = 0; b < CLOCK.bits; b++) {
        const bit = cellLuma(data, b, 0) >= 128;
        if (bit === cellLuma(data, b, 1) >= 128) return null;
        code = code * 2 + (bit ? 1 : 0);
      }
      return code;
    };
    const sample = (displayWall, mediaTime) => {
      if (video.readyState < 2 || !video.videoWidth) return;
      const code = read();
      if (clock.method === 'poll' && code !== null && code === last) return;
      last = code;
      clock.frames += 1;
      if (code === null) {
        record(displayWall, null, mediaTime);
        return;
      }
      let latency = (((Math.round(displayWall) - code) % WRAP) + WRAP) % WRAP;
      if (latency >= WRAP / 2) latency -= WRAP; // a capture time after display: shown, not hidden
      record(displayWall, latency, mediaTime);
    };
    if ('requestVideoFrameCallback' in HTMLVideoElement.prototype) {
      clock.method = 'rvfc';
      const onFrame = (highRes, meta) => {
        // When the compositor shows the frame, as wall-clock milliseconds.
        const display = Date.now() + (meta.expectedDisplayTime - performance.now());
        sample(display, meta.mediaTime);
        video.requestVideoFrameCallback(onFrame);
      };
      video.requestVideoFrameCallback(onFrame);
    } else {
      clock.method = 'poll';
      setInterval(() => sample(Date.now(), video.currentTime), 10);
    }
  }
  // The frames displayed at or after `sinceWall` (ms since 1970): the readable ones as [wall ms,
  // latency ms, media time s], and how many did not read.
  hw.clockSamples = (sinceWall) => {
    const recent = clock.samples.filter((s) => s[0] >= sinceWall);
    return {
      samples: recent.filter((s) => s[1] !== null),
      unreadable: recent.filter((s) => s[1] === null).length,
      frames: clock.frames,
      method: clock.method,
    };
  };

  // A plain-data picture of the moment, read by play.mjs.
  hw.snapshot = () => {
    const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
    const buffered = [];
    for (let i = 0; i < video.buffered.length; i++) buffered.push([video.buffered.start(i), video.buffered.end(i)]);
    const safe = (f, fallback) => {
      try {
        return api ? f() : fallback;
      } catch (e) {
        return fallback;
      }
    };
    return {
      t: now(),
      currentTime: video.currentTime,
      paused: video.paused,
      ended: video.ended,
      readyState: video.readyState,
      playbackRate: video.playbackRate,
      videoWidth: video.videoWidth,
      videoHeight: video.videoHeight,
      totalFrames: q ? q.totalVideoFrames : null,
      droppedFrames: q ? q.droppedVideoFrames : null,
      buffered,
      live: hw.live,
      latency: safe(() => api.latency(), null),
      variants: safe(() => api.variants(), []),
      variant: safe(() => api.current(), null),
      startedAt: hw.startedAt,
      stalls: hw.stalls,
      seeks: hw.seeks,
      errors: hw.errors.slice(),
      warnings: hw.warnings.slice(),
    };
  };
  hw.destroy = () => {
    try {
      if (api) api.destroy();
    } catch (e) {
      // the browser is closed next anyway
    }
  };
})();
