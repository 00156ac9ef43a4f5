// A space's page: what a listener sees of one space, by its state.
//   live:      a Listen button that joins (proof of work, waiting room) and
//              plays the ticketed stream in an <audio> element;
//   scheduled: a countdown that polls the space and listens once it is on
//              air if the listener asked to;
//   ended:     the recording.
//
// Playback is a plain <audio> element, the simplest thing that works in
// every browser. Chromium plays a stream of unknown length only once it
// holds ~96 KB (docs/ARCHITECTURE.md: up to ~20 s at 32 kbit/s), so the
// stream is asked for with the largest burst the server gives (10 s of
// backlog at once) and short flushes. With 8 s of tone on air, headless
// Chromium played ~1 s after the click (cmd/amphi/web_test.go). Sub-second listening needs amphi's own player (fetch, Ogg
// demux, WebCodecs AudioDecoder, AudioWorklet): the next step.

const streamParams = 'burst=10s&flush=200ms';
const statePollMs = 5000;   // how often a scheduled or live page re-reads its space
const maxRetryMs = 30000;

const id = decodeURIComponent(location.pathname.split('/')[2] || '');
const $ = (x) => document.getElementById(x);
const spaceURL = '/spaces/' + encodeURIComponent(id);

let space = null;
let armed = false;      // the listener asked to listen once the space starts
let listening = false;  // a join or a stream is under way
let countdownTimer = 0;

function say(text, error = false) {
  const s = $('status');
  s.textContent = text;
  s.classList.toggle('error', error);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// sameOrigin keeps a URL's path and query only: the API builds absolute
// URLs from the Host it was asked on, which behind a TLS proxy says http.
function sameOrigin(u) {
  const x = new URL(u, location.href);
  return x.pathname + x.search;
}

async function apiError(r) {
  try {
    const body = await r.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (_) { /* not JSON */ }
  return 'the server answered ' + r.status;
}

function fmtDuration(s) {
  s = Math.max(0, Math.round(s));
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60), sec = s % 60;
  if (d > 0) return `${d} d ${h} h ${m} min`;
  if (h > 0) return `${h} h ${m} min`;
  if (m > 0) return `${m} min ${sec} s`;
  return `${sec} s`;
}

function render() {
  document.title = space.title + ' · amphi';
  $('title').textContent = space.title;
  const badge = $('state');
  badge.dataset.state = space.state;
  badge.textContent = {live: 'On air', scheduled: 'Scheduled', ended: 'Ended'}[space.state] || space.state;
  $('live-panel').hidden = space.state !== 'live';
  $('scheduled-panel').hidden = space.state !== 'scheduled';
  $('ended-panel').hidden = space.state !== 'ended';
  clearInterval(countdownTimer);
  const when = $('when');
  if (space.state === 'scheduled') {
    const at = space.scheduled_at ? new Date(space.scheduled_at) : null;
    when.textContent = at ? 'Starts ' + at.toLocaleString([], {dateStyle: 'full', timeStyle: 'short'}) : '';
    const tick = () => {
      const left = at ? (at - Date.now()) / 1000 : 0;
      $('countdown').textContent = left > 0 ? fmtDuration(left) : 'any moment now';
    };
    tick();
    countdownTimer = setInterval(tick, 1000);
  } else if (space.state === 'live') {
    when.textContent = space.started_at ? 'On air since ' + new Date(space.started_at).toLocaleTimeString() : '';
  } else if (space.state === 'ended') {
    when.textContent = space.ended_at ? 'Ended ' + new Date(space.ended_at).toLocaleString() : '';
    const rec = sameOrigin(space.recording_url || spaceURL + '/recording.opus');
    const replay = $('replay');
    if (replay.getAttribute('src') !== rec) replay.src = rec;
    $('download').href = rec;
  }
}

async function loadSpace() {
  const r = await fetch(spaceURL, {headers: {Accept: 'application/json'}});
  if (r.status === 404) {
    $('title').textContent = 'No such space';
    document.title = 'No such space · amphi';
    say('This space does not exist. It may have been removed, or the link is wrong.', true);
    return false;
  }
  if (!r.ok) throw new Error(await apiError(r));
  const prev = space && space.state;
  space = await r.json();
  render();
  if (prev === 'scheduled' && space.state === 'live') {
    say(armed ? 'The space is on air. Joining…' : 'The space is on air.');
    if (armed) listen();
  }
  if (space.state === 'ended' && prev && prev !== 'ended') say('The space has ended. Its recording is below.');
  return true;
}

// poll re-reads the space until it ends: a scheduled space's start and a
// live one's end change the page.
async function poll() {
  for (;;) {
    await sleep(statePollMs);
    if (space && space.state === 'ended') return;
    try { await loadSpace(); } catch (_) { /* try again on the next round */ }
  }
}

// solve runs the proof of work in a worker, showing progress against the
// expected 2^difficulty attempts.
function solve(challenge, difficulty) {
  return new Promise((resolve, reject) => {
    const expected = 2 ** difficulty;
    const box = $('pow'), bar = $('pow-progress'), text = $('pow-text');
    box.hidden = false;
    bar.max = expected;
    bar.value = 0;
    const show = (n) => {
      bar.value = Math.min(n, expected);
      text.textContent = `${n.toLocaleString()} attempts of about ${expected.toLocaleString()} expected`;
    };
    show(0);
    const w = new Worker('/static/pow-worker.js');
    w.onmessage = (e) => {
      const m = e.data;
      if (m.attempts !== undefined) show(m.attempts);
      if (m.nonce !== undefined || m.error !== undefined) {
        w.terminate();
        box.hidden = true;
        m.error ? reject(new Error(m.error)) : resolve(m.nonce);
      }
    };
    w.onerror = (e) => { w.terminate(); box.hidden = true; reject(new Error(e.message || 'the worker failed')); };
    w.postMessage({challenge, difficulty});
  });
}

async function join(body) {
  const init = {method: 'POST', headers: {Accept: 'application/json'}};
  if (body) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  return fetch(spaceURL + '/join', init);
}

// listen walks the join flow to a ticket, then plays.
async function listen() {
  if (listening) return;
  listening = true;
  const button = $('listen');
  button.disabled = true;
  let body = null, backoff = 1000;
  try {
    for (;;) {
      const r = await join(body);
      if (r.status === 429 || r.status === 503) {
        const after = Number(r.headers.get('Retry-After')) * 1000 || backoff;
        say(`${await apiError(r)}. Trying again in ${Math.round(after / 1000)} s…`);
        await sleep(after);
        backoff = Math.min(backoff * 2, maxRetryMs);
        continue;
      }
      if (!r.ok) throw new Error(await apiError(r));
      const j = await r.json();
      if (j.status === 'challenge') {
        say('Checking this browser before letting it in…');
        const nonce = await solve(j.challenge, j.difficulty);
        body = {challenge: j.challenge, nonce};
        say('Checked. Joining…');
        continue;
      }
      if (j.status === 'waiting') {
        say(`You are ${j.position} in line, about ${Math.ceil(j.eta_seconds || 0)} s.`);
        body = {listener: j.listener};
        await sleep(j.poll_after_ms || 2000);
        continue;
      }
      if (j.status === 'admitted') {
        play(j.listen_url);
        return;
      }
      throw new Error('unexpected answer ' + JSON.stringify(j.status));
    }
  } catch (e) {
    say('Could not join: ' + e.message + '. Press Listen to try again.', true);
    listening = false;
    button.disabled = false;
  }
}

function play(listenURL) {
  const u = sameOrigin(listenURL);
  audio.src = u + (u.includes('?') ? '&' : '?') + streamParams;
  $('player').hidden = false;
  $('listen').hidden = true;
  say('Admitted. Buffering the live audio…');
  audio.play().catch(() => say('Admitted. Press play on the player to start.'));
  audio.focus();
}

// The player's events, once for every stream it plays.
const audio = $('live');
audio.addEventListener('playing', () => say('Playing live.'));
audio.addEventListener('ended', () => { say('The stream ended.'); loadSpace().catch(() => {}); });
audio.addEventListener('error', () => {
  if (!audio.getAttribute('src')) return; // the error of removing it below
  say('The stream stopped. Press Listen to join again.', true);
  audio.removeAttribute('src');
  $('player').hidden = true;
  const b = $('listen');
  b.hidden = false;
  b.disabled = false;
  b.focus();
  listening = false;
});

$('listen').addEventListener('click', listen);
$('arm').addEventListener('click', () => {
  armed = !armed;
  const b = $('arm');
  b.setAttribute('aria-pressed', String(armed));
  b.textContent = armed ? 'Will listen when it starts (cancel)' : 'Listen when it starts';
  say(armed ? 'This page will start listening when the space goes on air. Keep it open.' : '');
});

(async () => {
  try {
    if (await loadSpace()) poll();
  } catch (e) {
    $('title').textContent = 'Could not load the space';
    say(e.message, true);
  }
})();
