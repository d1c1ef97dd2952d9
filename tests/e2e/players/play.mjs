#!/usr/bin/env node
// Play one stream in headless Debian Chromium with hls.js, dash.js or Shaka Player, and print one
// JSON object on stdout describing what happened.
//
//   node play.mjs --player hls.js|dash.js|shaka --url URL [--seconds 10] [--live|--vod]
//                 [--low-latency] [--start-timeout 15] [--config JSON] [--user-data-dir DIR]
//                 [--chromium /usr/bin/chromium] [--start SECONDS] [--clock]
//
// A tiny HTTP server on 127.0.0.1 (random port) serves the test page and the player library; the
// media comes from URL (another origin, so it must send CORS headers). The run waits for playback
// to start (at most --start-timeout seconds), then measures currentTime progress over --seconds.
// Exit status: 0 when a result was printed (playback failures are in its "errors"), 1 when the
// harness itself failed (browser did not launch...: "harness_error" says why), 2 for bad arguments.
// --clock reads the wall-clock code that bench/latency.py burns into each frame (see page.js): the
// result's "clock_latencies" holds [seconds into the measurement, glass-to-glass latency in seconds]
// for every displayed frame of the measurement, "clock_unreadable" the frames whose code did not read.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const modules = join(here, 'node_modules');

// Player name -> the library file served to the page (a classic script defining a global).
const LIBRARIES = {
  'hls.js': join(modules, 'hls.js/dist/hls.min.js'),
  'dash.js': join(modules, 'dashjs/dist/modern/umd/dash.all.min.js'),
  shaka: join(modules, 'shaka-player/dist/shaka-player.compiled.js'),
};

// Flags from shared/TESTING.md: no network beyond loopback, no first-run or component work, and
// autoplay without a user gesture. Playwright adds --headless, --mute-audio and its pipe.
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  '--autoplay-policy=no-user-gesture-required',
  // Resolve no host names at all: Chromium otherwise looks up Google's hosts (accounts, update)
  // through the system resolver. Media URLs use IP literals (127.0.0.1); localhost still works.
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.*, EXCLUDE [::1]',
];

function usage(message) {
  process.stderr.write(`play.mjs: ${message}\n`);
  process.exit(2);
}

let opts;
try {
  opts = parseArgs({
    options: {
      player: { type: 'string' },
      url: { type: 'string' },
      seconds: { type: 'string', default: '10' },
      live: { type: 'boolean' },
      vod: { type: 'boolean' },
      'low-latency': { type: 'boolean', default: false },
      'start-timeout': { type: 'string', default: '15' },
      start: { type: 'string' },
      config: { type: 'string', default: '{}' },
      'user-data-dir': { type: 'string' },
      chromium: { type: 'string', default: '/usr/bin/chromium' },
      clock: { type: 'boolean', default: false },
    },
    strict: true,
  }).values;
} catch (e) {
  usage(e.message);
}
if (!(opts.player in LIBRARIES)) usage(`--player must be one of ${Object.keys(LIBRARIES).join(', ')}`);
if (!opts.url) usage('--url is required');
const seconds = Number(opts.seconds);
const startTimeout = Number(opts['start-timeout']);
if (!(seconds > 0) || !(startTimeout > 0)) usage('--seconds and --start-timeout must be positive numbers');
if (opts.live && opts.vod) usage('--live and --vod exclude each other');
// --start: where playback starts on the player's currentTime axis (see page.js); default: the
// player's own choice (the live edge less its delay, or 0).
const start = opts.start === undefined ? null : Number(opts.start);
if (start !== null && !Number.isFinite(start)) usage('--start must be a number');
let playerConfig;
try {
  playerConfig = JSON.parse(opts.config);
} catch (e) {
  usage(`--config is not JSON: ${e.message}`);
}
const expectLive = opts.live ? true : opts.vod ? false : null;

const LAUNCH_BUDGET = 20; // seconds to launch Chromium and load the page
const HARD_TIMEOUT = LAUNCH_BUDGET + startTimeout + seconds + 10;
const POLL_MS = 200;

const wallStart = Date.now();
const elapsed = () => (Date.now() - wallStart) / 1000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const result = {
  player: opts.player,
  url: opts.url,
  ok: false,
  started: false,
  startup_seconds: null,
  measured_seconds: 0,
  advanced: 0,
  start_time: null,
  end_time: null,
  live: null,
  latency: null,
  video_width: 0,
  video_height: 0,
  total_frames: null,
  dropped_frames: null,
  stalls: 0,
  seeks: 0,
  variants: [],
  variant: null,
  errors: [],
  warnings: [],
  http_failures: [],
  console: [],
  log: [],
  browser_version: null,
  library_version: null,
  harness_error: null,
  elapsed: 0,
  clock_latencies: [],
  clock_unreadable: 0,
  clock_method: null,
};

// ---- the static server for the page and the library ------------------------------------------

function page() {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>headwater player harness</title></head>
<body style="margin:0;background:#000">
<script src="/lib/player.js"></script>
<script src="/page.js"></script>
</body></html>
`;
}

function startServer() {
  const files = {
    '/page.js': [join(here, 'page.js'), 'text/javascript'],
    '/lib/player.js': [LIBRARIES[opts.player], 'text/javascript'],
  };
  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    const headers = { 'Cache-Control': 'no-store' };
    if (path === '/') {
      res.writeHead(200, { ...headers, 'Content-Type': 'text/html; charset=utf-8' });
      res.end(page());
    } else if (path in files) {
      const [file, type] = files[path];
      try {
        const body = readFileSync(file);
        res.writeHead(200, { ...headers, 'Content-Type': type });
        res.end(body);
      } catch (e) {
        res.writeHead(500, headers);
        res.end(String(e));
      }
    } else if (path === '/time') {
      // The default UTC timing source given to dash.js (see page.js).
      res.writeHead(200, { ...headers, 'Content-Type': 'text/plain' });
      res.end(new Date().toISOString());
    } else if (path === '/favicon.ico') {
      res.writeHead(204, headers);
      res.end();
    } else {
      res.writeHead(404, headers);
      res.end('not found');
    }
  });
  server.keepAliveTimeout = 1000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

// ---- the run -----------------------------------------------------------------------------------

let server = null;
let context = null;
let userDataDir = null;
let printed = false;

function print(exitCode) {
  if (printed) return;
  printed = true;
  result.elapsed = Math.round(elapsed() * 1000) / 1000;
  result.ok = result.harness_error === null && result.started && result.errors.length === 0;
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exitCode = exitCode;
}

// Chromium processes started with our profile folder, found through /proc (Linux).
function strays(dir) {
  const flag = `--user-data-dir=${dir}`;
  const pids = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').includes(flag)) pids.push(Number(entry));
    } catch (e) {
      // the process ended meanwhile
    }
  }
  return pids;
}

async function cleanup() {
  const closing = [];
  if (context) {
    const c = context;
    context = null;
    closing.push(Promise.race([c.close().catch(() => {}), sleep(5000)]));
  }
  if (server) {
    const s = server;
    server = null;
    s.closeAllConnections?.();
    closing.push(new Promise((resolve) => s.close(() => resolve())));
  }
  await Promise.race([Promise.all(closing), sleep(8000)]);
  if (userDataDir) {
    // Playwright ends the browser on close; whatever is left (close hung) is killed here.
    for (const pid of strays(userDataDir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch (e) {
        // already gone
      }
    }
    if (userDataDir !== opts['user-data-dir']) rmSync(userDataDir, { recursive: true, force: true });
    userDataDir = null;
  }
}

const hardTimer = setTimeout(async () => {
  result.errors.push(`harness: hard timeout after ${HARD_TIMEOUT} s`);
  print(0);
  await cleanup();
  process.exit(process.exitCode ?? 0);
}, HARD_TIMEOUT * 1000);

for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
  process.on(signal, async () => {
    result.harness_error = result.harness_error ?? `interrupted by ${signal}`;
    print(1);
    await cleanup();
    process.exit(1);
  });
}

function chromiumVersion() {
  const out = spawnSync(opts.chromium, ['--version'], { encoding: 'utf8', timeout: 10000 });
  return (out.stdout || '').trim() || null;
}

async function launch() {
  const { chromium } = await import('playwright-core');
  userDataDir = opts['user-data-dir'] ?? mkdtempSync(join(tmpdir(), 'hw-chromium-'));
  // launchPersistentContext passes --user-data-dir=userDataDir itself: a fresh profile per run.
  return chromium.launchPersistentContext(userDataDir, {
    executablePath: opts.chromium,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 800, height: 450 },
    timeout: LAUNCH_BUDGET * 1000,
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
  });
}

function fold(snap) {
  result.live = snap.live;
  result.latency = snap.latency;
  result.video_width = snap.videoWidth;
  result.video_height = snap.videoHeight;
  result.total_frames = snap.totalFrames;
  result.dropped_frames = snap.droppedFrames;
  result.stalls = snap.stalls;
  result.seeks = snap.seeks;
  result.variants = snap.variants;
  result.variant = snap.variant;
  result.errors.push(...snap.errors.filter((e) => !result.errors.includes(e)));
  result.warnings = snap.warnings;
}

async function main() {
  try {
    server = await startServer();
    context = await launch();
  } catch (e) {
    result.harness_error = `could not start: ${e.message.split('\n')[0]}`;
    return 1;
  }
  result.browser_version = chromiumVersion();

  const pg = context.pages()[0] ?? (await context.newPage());
  pg.on('console', (m) => {
    if ((m.type() === 'error' || m.type() === 'warning') && result.console.length < 100) {
      result.console.push(`${m.type()}: ${m.text()}`.slice(0, 500));
    }
  });
  pg.on('pageerror', (e) => result.errors.push(`page error: ${e.message}`));
  pg.on('crash', () => result.errors.push('page crashed'));
  pg.on('response', (r) => {
    if (r.status() >= 400 && result.http_failures.length < 100) {
      result.http_failures.push({ url: r.url(), status: r.status() });
    }
  });
  pg.on('requestfailed', (r) => {
    const failure = r.failure()?.errorText ?? 'failed';
    if (failure !== 'net::ERR_ABORTED' && result.http_failures.length < 100) {
      result.http_failures.push({ url: r.url(), status: null, failure });
    }
  });

  const cfg = { player: opts.player, url: opts.url, live: expectLive, lowLatency: opts['low-latency'], start, config: playerConfig, clock: opts.clock };
  const { port } = server.address();
  try {
    await pg.goto(`http://127.0.0.1:${port}/?cfg=${encodeURIComponent(JSON.stringify(cfg))}`, {
      waitUntil: 'load',
      timeout: LAUNCH_BUDGET * 1000,
    });
  } catch (e) {
    result.harness_error = `could not load the test page: ${e.message.split('\n')[0]}`;
    return 1;
  }
  result.library_version = await pg.evaluate(
    () => window.Hls?.version ?? window.dashjs?.Version ?? window.shaka?.Player?.version ?? null,
  );

  const snapshot = () => pg.evaluate(() => window.__hw.snapshot());

  // 1. Wait for playback to start: currentTime moving while playing.
  const startDeadline = Date.now() + startTimeout * 1000;
  let snap = await snapshot();
  while (snap.startedAt === null && snap.errors.length === 0 && Date.now() < startDeadline) {
    await sleep(POLL_MS);
    snap = await snapshot();
  }
  fold(snap);
  if (snap.startedAt === null) {
    if (result.errors.length === 0) {
      result.errors.push(
        `playback did not start within ${startTimeout} s (currentTime ${snap.currentTime}, readyState ${snap.readyState}, paused ${snap.paused})`,
      );
    }
    result.log = await pg.evaluate(() => window.__hw.log);
    return 0;
  }
  result.started = true;
  result.startup_seconds = snap.startedAt;

  // 2. Measure currentTime progress over `seconds` of wall-clock time, stopping early on an error.
  const begin = Date.now();
  result.start_time = snap.currentTime;
  while (Date.now() - begin < seconds * 1000 && snap.errors.length === 0 && !snap.ended) {
    await sleep(Math.min(POLL_MS, seconds * 1000 - (Date.now() - begin)));
    snap = await snapshot();
  }
  result.measured_seconds = (Date.now() - begin) / 1000;
  result.end_time = snap.currentTime;
  result.advanced = Math.round((snap.currentTime - result.start_time) * 1000) / 1000;
  fold(snap);
  if (opts.clock) {
    const clock = await pg.evaluate((since) => window.__hw.clockSamples(since), begin);
    result.clock_latencies = clock.samples.map(([wall, latency]) => [(wall - begin) / 1000, latency / 1000]);
    result.clock_unreadable = clock.unreadable;
    result.clock_method = clock.method;
  }
  if (expectLive !== null && snap.live !== null && snap.live !== expectLive) {
    result.errors.push(`expected a ${expectLive ? 'live' : 'VOD'} stream, the player sees ${snap.live ? 'live' : 'VOD'}`);
  }
  result.log = await pg.evaluate(() => window.__hw.log);
  await pg.evaluate(() => window.__hw.destroy());
  return 0;
}

let code = 1;
try {
  code = await main();
} catch (e) {
  if (result.harness_error === null) result.errors.push(`harness: ${e.message.split('\n')[0]}`);
  code = 0;
} finally {
  clearTimeout(hardTimer);
  print(code);
  await cleanup();
}
process.exit(code);
