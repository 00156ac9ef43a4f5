// A space's page: what a listener sees of one space, by its state.
//   live:      a Listen button that joins (proof of work, waiting room) and
//              plays the ticketed stream; how far behind live it plays;
//              "From the start" and "Jump to live"; the room's live state
//              (stage, listeners, reactions), reaction buttons and a
//              request to speak;
//   scheduled: a countdown that polls the space and listens once it is on
//              air if the listener asked to, a reminder notification and a
//              calendar file;
//   ended:     the recording.
//
// The player is the first of these the browser has (?player=low|hls|audio
// forces one):
//   1. amphi's own (player.js: fetch, Ogg demux, WebCodecs AudioDecoder,
//      WebAudio), wherever WebCodecs decodes Opus: ~0.5 s behind the
//      speakers (cmd/amphi/web_latency_test.go), and the only one that
//      rewinds (from=start) and catches up;
//   2. the browser's own HLS (Safari), with the LL-HLS playlist;
//   3. hls.js (vendored) where Media Source Extensions exist: ~0.8 s;
//   4. the <audio> element with Ogg, which plays everywhere but ~10 s
//      behind: Chromium plays a stream of unknown length only once it
//      holds ~96 KB (docs/ARCHITECTURE.md), so it is asked for with the
//      largest burst the server gives (10 s of backlog at once) and short
//      flushes, and plays that burst from its start.

import {apiProblem, listenersText, pollState, reactionKinds, renderReactions, renderStage, sentence} from './stage.js';

const streamParams = 'burst=10s&flush=200ms';
const elementBurstSeconds = 10; // streamParams' burst
const maxRetryMs = 30000;
const reactEveryMs = 2000;     // docs/API.md: at most one reaction request every 2 s
const maxReactionBatch = 20;   // the API's largest count; more taps than that in 2 s are dropped
const requestPollMs = 2000;    // docs/API.md: poll a request to speak every 2 s
const requestHiddenPollMs = 5000; // slower when hidden, well inside the 30 s after which the server drops it

const id = decodeURIComponent(location.pathname.split('/')[2] || '');
const $ = (x) => document.getElementById(x);
const spaceURL = '/spaces/' + encodeURIComponent(id);
const requestKey = 'amphi.request.' + id;

let space = null;
let armed = false;      // the listener asked to listen once the space starts
let reminding = false;  // the listener asked to be told when it starts
let listening = false;  // a join or a stream is under way
let countdownTimer = 0;
let poller = null;
let room = null;        // the last live state, for redrawing the chips on a tap

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
  return (await apiProblem(r)).message;
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
  const desc = $('description');
  desc.textContent = space.description || '';
  desc.hidden = !space.description;
  const badge = $('state');
  badge.dataset.state = space.state;
  badge.textContent = {live: 'On air', scheduled: 'Scheduled', ended: 'Ended'}[space.state] || space.state;
  $('live-panel').hidden = space.state !== 'live';
  $('scheduled-panel').hidden = space.state !== 'scheduled';
  $('ended-panel').hidden = space.state !== 'ended';
  $('room').hidden = space.state !== 'live';
  if (space.state !== 'live') $('room-stats').hidden = true;
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
    const cal = $('calendar');
    cal.href = spaceURL + '/calendar.ics';
    cal.hidden = !at; // the API has no calendar event for a space with no start time
  } else if (space.state === 'live') {
    when.textContent = space.started_at ? 'On air since ' + new Date(space.started_at).toLocaleTimeString() : '';
  } else if (space.state === 'ended') {
    when.textContent = space.ended_at ? 'Ended ' + new Date(space.ended_at).toLocaleString() : '';
    const rec = sameOrigin(space.recording_url || spaceURL + '/recording.opus');
    const replay = $('replay');
    if (replay.getAttribute('src') !== rec) replay.src = rec;
    $('download').href = rec;
    $('replay-page').href = '/s/' + encodeURIComponent(id) + '/replay';
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
    if (reminding) notifyLive();
    if (armed) listen();
  }
  if (space.state === 'live') resumeRequest();
  if (space.state === 'ended') {
    if (prev && prev !== 'ended') say('The space has ended. Its recording is below.');
    endRequest('');
    if (poller) poller.stop();
  }
  return true;
}

// onState takes one answer of GET /spaces/{id}/state. A change of state
// (started, ended) re-reads the space itself, which has the start time and
// the recording's address the state leaves out.
async function onState(st) {
  if (!space) return;
  if (st.state && st.state !== space.state) await loadSpace();
  if (space.state !== 'live') return;
  room = st;
  const stats = $('room-stats');
  stats.hidden = false;
  let text = listenersText(st.listeners);
  if (st.waiting > 0) text += ', ' + st.waiting.toLocaleString() + ' waiting to get in';
  $('listeners').textContent = text;
  const rec = $('recording');
  rec.dataset.on = String(!!st.recording);
  rec.textContent = st.recording ? 'Recording' : 'Not recorded';
  renderStage($('stage'), $('stage-empty'), st.speakers);
  drawReactions();
}

// onStateError reads the space itself only when the state says it does not
// exist (removed): anything else, the next poll tries again, since one
// more request would only add to a busy or limiting server.
async function onStateError(r) {
  if (r && r.status === 404) await loadSpace();
}

// ---- Reactions ----
//
// Taps are counted per kind and sent in batches, one request at most every
// 2 s, rotating over the kinds tapped. What the chips show is the server's
// count of the last 10 s plus this page's unsent taps, and never less than
// this page's own taps of the last 10 s, so a tap shows at once and does
// not vanish before the server has counted it.

const pending = {};   // kind → taps not sent yet
let mine = [];        // {kind, at} of this page's taps, for the last window
let lastSent = 0;
let sendTimer = 0;
let nextKind = 0;

function drawReactions() {
  const windowMs = ((room && room.reactions_window_s) || 10) * 1000;
  const now = Date.now();
  mine = mine.filter((t) => now - t.at < windowMs);
  const server = (room && room.reactions) || {};
  const counts = {};
  for (const {kind} of reactionKinds) {
    const own = mine.filter((t) => t.kind === kind).length;
    counts[kind] = Math.max((server[kind] || 0) + (pending[kind] || 0), own);
  }
  renderReactions($('reactions-live'), counts);
}

function tap(e) {
  const b = e.currentTarget;
  const kind = b.dataset.kind;
  pending[kind] = Math.min((pending[kind] || 0) + 1, maxReactionBatch);
  mine.push({kind, at: Date.now()});
  b.classList.remove('tapped');
  void b.offsetWidth; // restart the animation on every tap
  b.classList.add('tapped');
  drawReactions();
  scheduleReactions(0);
}

function scheduleReactions(delay) {
  if (sendTimer) return;
  const wait = Math.max(delay, lastSent + reactEveryMs - Date.now(), 0);
  sendTimer = setTimeout(sendReactions, wait);
}

async function sendReactions() {
  sendTimer = 0;
  if (!space || space.state !== 'live') return;
  let kind = '';
  for (let i = 0; i < reactionKinds.length && !kind; i++) {
    const k = reactionKinds[(nextKind + i) % reactionKinds.length].kind;
    if (pending[k] > 0) {
      kind = k;
      nextKind = (nextKind + i + 1) % reactionKinds.length;
    }
  }
  if (!kind) return;
  const n = pending[kind];
  pending[kind] = 0;
  lastSent = Date.now();
  let retry = 0;
  try {
    const r = await fetch(spaceURL + '/reactions', {
      method: 'POST',
      headers: {'Content-Type': 'application/json', Accept: 'application/json'},
      body: JSON.stringify({kind, count: n}),
    });
    // Too many: keep the taps and send them later, without a word: a
    // reaction is not worth an error message. Any other refusal (the
    // space ended) drops them.
    if (r.status === 429) {
      pending[kind] = Math.min(pending[kind] + n, maxReactionBatch);
      retry = (Number(r.headers.get('Retry-After')) || 2) * 1000;
    }
  } catch (_) {
    pending[kind] = Math.min(pending[kind] + n, maxReactionBatch);
    retry = reactEveryMs;
  }
  if (Object.values(pending).some((v) => v > 0)) scheduleReactions(retry);
}

// ---- Requests to speak ----
//
// The request's id and secret stay in sessionStorage, so a reload keeps
// the place in line, and leave it once the request is answered.

let request = null;   // {id, secret, name} while a request is pending
let requestTimer = 0;

function requestSay(text, error = false) {
  const s = $('request-status');
  if (s.textContent !== text) s.textContent = text; // the same words again would be read again
  s.classList.toggle('error', error);
}

function storeRequest(r) {
  try {
    if (r) sessionStorage.setItem(requestKey, JSON.stringify(r));
    else sessionStorage.removeItem(requestKey);
  } catch (_) { /* storage off: the request lasts as long as the page */ }
}

function storedRequest() {
  try {
    const r = JSON.parse(sessionStorage.getItem(requestKey) || 'null');
    if (r && typeof r.id === 'string' && typeof r.secret === 'string') return r;
  } catch (_) { /* unreadable: as good as none */ }
  return null;
}

function showRequest(waiting) {
  $('request-form').hidden = waiting;
  $('request-waiting').hidden = !waiting;
}

// requestProblem says why a request to speak was refused, in a sentence.
async function requestProblem(r) {
  const p = await apiProblem(r);
  const after = Number(r.headers.get('Retry-After'));
  const again = after > 0 ? ` Try again in ${Math.ceil(after)} s.` : ' Try again in a little while.';
  if (r.status === 429) return 'Too many requests to speak came from your network.' + again;
  if (r.status === 503 && p.code === 'full') return 'Too many people are already waiting to speak.' + again;
  if (r.status === 409) return 'This space is not on air, so nobody can ask to speak.';
  return sentence(p.message);
}

async function submitRequest(e) {
  e.preventDefault();
  const input = $('request-name');
  const name = input.value.trim();
  const chars = [...name].length;
  if (chars < 1 || chars > 60) {
    input.setAttribute('aria-invalid', 'true');
    requestSay(chars < 1 ? 'Type your name first: the host and the listeners see it.' : 'Your name can have at most 60 characters.', true);
    input.focus();
    return;
  }
  input.removeAttribute('aria-invalid');
  const button = $('request-submit');
  button.disabled = true;
  requestSay('Sending your request…');
  try {
    const r = await fetch(spaceURL + '/requests', {
      method: 'POST',
      headers: {'Content-Type': 'application/json', Accept: 'application/json'},
      body: JSON.stringify({name}),
    });
    if (!r.ok) {
      requestSay(await requestProblem(r), true);
      return;
    }
    const j = await r.json();
    request = {id: j.id, secret: j.secret, name: j.name || name};
    storeRequest(request);
    showRequest(true);
    requestSay('Waiting for the host to approve…');
    $('request-withdraw').focus();
    clearTimeout(requestTimer);
    requestTimer = setTimeout(checkRequest, requestPollMs);
  } catch (err) {
    requestSay('Could not send your request: ' + err.message + '. Try again.', true);
  } finally {
    button.disabled = false;
  }
}

// endRequest forgets the request and shows the form again, with why.
function endRequest(text, error = false) {
  clearTimeout(requestTimer);
  const had = !!request;
  request = null;
  storeRequest(null);
  showRequest(false);
  if (had || text) requestSay(text, error);
}

// resumeRequest picks up a request made before a reload.
function resumeRequest() {
  if (request) return;
  request = storedRequest();
  if (!request) return;
  if (request.name) $('request-name').value = request.name;
  showRequest(true);
  requestSay('Waiting for the host to approve…');
  checkRequest();
}

async function checkRequest() {
  clearTimeout(requestTimer);
  const req = request;
  if (!req) return;
  try {
    const r = await fetch(spaceURL + '/requests/' + encodeURIComponent(req.id), {
      headers: {Authorization: 'Bearer ' + req.secret, Accept: 'application/json'},
      cache: 'no-store',
    });
    if (request !== req) return; // withdrawn meanwhile
    if (r.status === 404) return endRequest('Your request to speak is gone: it expired or was withdrawn. You can ask again.', true);
    if (r.status === 401) return endRequest('Your request to speak is no longer valid. You can ask again.', true);
    if (r.ok) {
      const j = await r.json();
      if (j.status === 'declined') return endRequest('The host declined your request to speak.');
      if (j.status === 'approved') return goSpeak(j, req);
      requestSay('Waiting for the host to approve…');
    } else if (r.status !== 429) {
      requestSay(sentence((await apiProblem(r)).message) + ' Still trying…', true);
    }
  } catch (_) {
    requestSay('Cannot reach the server. Still trying…', true);
  }
  if (request === req) requestTimer = setTimeout(checkRequest, document.hidden ? requestHiddenPollMs : requestPollMs);
}

// goSpeak opens the speaker page with the approved request's token in the
// fragment, which never reaches a server. speak_url is followed for its
// path only, and only if it is this space's speaker page.
function goSpeak(j, req) {
  let path = '/s/' + encodeURIComponent(id) + '/speak';
  let token = j.token || '';
  if (j.speak_url) {
    try {
      const u = new URL(j.speak_url, location.href);
      if (/^\/s\/[^/]+\/speak$/.test(u.pathname)) path = u.pathname;
      if (!token) token = new URLSearchParams(u.hash.slice(1)).get('token') || '';
    } catch (_) { /* not a URL: the default path */ }
  }
  if (!token) return endRequest('The host approved your request, but no speaker link came with it. Ask again.', true);
  clearTimeout(requestTimer);
  request = null;
  storeRequest(null);
  requestSay('Approved! Taking you to the stage…');
  location.assign(path + '#token=' + encodeURIComponent(token) + '&name=' + encodeURIComponent(j.name || req.name || ''));
}

async function withdraw() {
  const req = request;
  if (!req) return;
  const button = $('request-withdraw');
  button.disabled = true;
  try {
    const r = await fetch(spaceURL + '/requests/' + encodeURIComponent(req.id), {
      method: 'DELETE',
      headers: {Authorization: 'Bearer ' + req.secret},
    });
    // Gone already is as good as withdrawn.
    if (r.ok || r.status === 404 || r.status === 401) {
      endRequest('You withdrew your request to speak.');
      $('request-submit').focus();
    } else {
      requestSay('Could not withdraw your request: ' + sentence((await apiProblem(r)).message), true);
    }
  } catch (err) {
    requestSay('Could not withdraw your request: ' + err.message + '. Try again.', true);
  } finally {
    button.disabled = false;
  }
}

// ---- Reminder ----
//
// A notification while this page stays open: the page already polls, so
// it needs no push service or service worker. Where notifications are
// refused or missing, the page's own status line still says it started.

async function remind() {
  const b = $('remind');
  if (reminding) {
    reminding = false;
    b.setAttribute('aria-pressed', 'false');
    b.textContent = 'Remind me';
    $('remind-status').textContent = 'No reminder.';
    return;
  }
  reminding = true;
  b.setAttribute('aria-pressed', 'true');
  b.textContent = 'Reminder on (cancel)';
  const s = $('remind-status');
  let perm = 'unsupported';
  if ('Notification' in window) {
    try {
      perm = Notification.permission === 'default' ? await Notification.requestPermission() : Notification.permission;
    } catch (_) {
      perm = 'denied';
    }
  }
  if (perm === 'granted') {
    s.textContent = 'You will get a notification when the space starts, as long as this page stays open.';
  } else if (perm === 'unsupported') {
    s.textContent = 'This browser cannot show notifications. Keep this page open: it will say here when the space starts.';
  } else {
    s.textContent = 'Notifications are blocked for this site. Keep this page open: it will say here when the space starts.';
  }
}

function notifyLive() {
  $('remind-status').textContent = 'The space is on air.';
  document.title = 'On air: ' + space.title + ' · amphi';
  if (!('Notification' in window) || Notification.permission !== 'granted') return;
  try {
    const n = new Notification(space.title + ' is on air', {
      body: armed ? 'Listening now.' : 'Open the page to listen.',
      tag: 'amphi-' + id,
    });
    n.addEventListener('click', () => { window.focus(); n.close(); });
  } catch (_) { /* Android wants a service worker for notifications: the page's status says it */ }
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
        play(j.listen_url, j.hls_url);
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

// ---- Choosing the player ----

const forced = new URLSearchParams(location.search).get('player'); // low, hls or audio
const audio = $('live');

// lowPlayer is player.js where WebCodecs decodes Opus, else null: loaded
// at once, since it is the page's first choice.
const lowPlayer = forced === 'hls' || forced === 'audio' ? Promise.resolve(null)
  : import('./player.js').then(async (m) => (await m.supported() ? m : null)).catch(() => null);

// nativeHLS: Safari's own HLS. Chromium says it "maybe" plays HLS too, yet
// did not play our LL-HLS (fMP4 Opus), so it is not believed there.
const nativeHLS = () => !!audio.canPlayType('application/vnd.apple.mpegurl') && !('chrome' in window);

async function choosePlayer() {
  if (forced === 'hls' || forced === 'audio') return forced;
  if (await lowPlayer) return 'low';
  if (forced === 'low') {
    say('This browser cannot play with low latency: using the standard player.');
    return 'audio';
  }
  if (nativeHLS()) return 'native';
  if (window.MediaSource || window.ManagedMediaSource) return 'hls';
  return 'audio';
}

let current = '';   // the player playing: low, native, hls or audio
let listenURL = ''; // the ticketed stream, for restarting player.js
let pendingFrom = ''; // where a restart that had to join again starts

async function play(liveURL, hlsURL) {
  const u = sameOrigin(liveURL);
  const h = hlsURL ? sameOrigin(hlsURL) : '';
  listenURL = u;
  current = await choosePlayer();
  if (current === 'low') {
    const from = pendingFrom;
    pendingFrom = '';
    return playLow(u, from);
  }
  if (current === 'native' && h) return playElement(h, 'native');
  if (current === 'hls' && h) return playHLS(h, u);
  return playElement(u, 'audio');
}

// ---- LL-HLS through hls.js ----
//
// The space's LL-HLS playlist in the <audio> element through hls.js
// (vendored from npm, hls.light.min.mjs, Apache-2.0; loaded only when
// used), which feeds the fMP4 parts to Media Source Extensions, as its
// authors advise wherever MSE exists; forced (?player=hls), the browser's
// own HLS where it does not. The worker is off: the page's policy allows
// no blob workers.

async function playHLS(u, oggURL) {
  showElement('hls');
  say('Admitted. Buffering the live audio…');
  const Hls = (await import('./hls.light.min.mjs')).default;
  if (Hls.isSupported()) {
    if (window.amphiHLS) window.amphiHLS.destroy();
    // window.amphiHLS lets a test (or a curious listener) read it.
    window.amphiHLS = new Hls({enableWorker: false, lowLatencyMode: true});
    window.amphiHLS.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) say('The stream stopped: ' + d.details + '. Press Listen to join again.', true); });
    window.amphiHLS.loadSource(u);
    window.amphiHLS.attachMedia(audio);
  } else if (audio.canPlayType('application/vnd.apple.mpegurl')) {
    current = 'native';
    audio.src = u;
  } else {
    say('This browser plays no HLS: using the standard player.');
    return playElement(oggURL, 'audio');
  }
  audio.play().catch(() => say('Admitted. Press play on the player to start.'));
  audio.focus();
}

// ---- amphi's own player ----

let lowGen = 0; // counts player.js's starts: only the latest plays
const catchingUp = 'Playing from the start of the space, catching up with live.';

async function playLow(u, from = '', restarted = false) {
  const m = await lowPlayer;
  $('listen').hidden = true;
  $('player').hidden = true;
  $('live-info').hidden = false;
  $('dvr').hidden = false;
  say(from ? 'Going back to the start…' : 'Admitted. Buffering the live audio…');
  if (window.amphiPlayer) window.amphiPlayer.stop();
  window.amphiPlayer = null;
  const gen = ++lowGen;
  drawBehind();
  try {
    // window.amphiPlayer lets a test (or a curious listener) read its
    // analyser and stats.
    const p = await m.playLowLatency(u, {from, onState: (s, err) => {
      if (gen !== lowGen) return;
      if (s === 'playing') say(from ? catchingUp : 'Playing live.');
      if (s === 'ended') { say('The stream ended.'); loadSpace().catch(() => {}); }
      if (s === 'error') lowStopped(err);
    }});
    if (gen !== lowGen) { // pressed again meanwhile: the later one plays
      p.stop();
      return;
    }
    window.amphiPlayer = p;
    drawBehind();
  } catch (e) {
    if (gen !== lowGen) return;
    // A restart whose place lapsed (tickets last minutes) joins again,
    // then starts where it was asked to.
    if (restarted && e && e.status === 401) {
      pendingFrom = from;
      listening = false;
      listen();
      return;
    }
    lowStopped(e);
  }
}

function lowStopped(err) {
  say('The stream stopped' + (err && err.message ? ': ' + err.message : '') + '. Press Listen to join again.', true);
  $('dvr').hidden = true;
  $('live-info').hidden = true;
  const b = $('listen');
  b.hidden = false;
  b.disabled = false;
  b.focus();
  listening = false;
}

// stopLow stops player.js; Listen joins again.
function stopLow() {
  lowGen++;
  if (window.amphiPlayer) window.amphiPlayer.stop();
  window.amphiPlayer = null;
  current = '';
  $('dvr').hidden = true;
  $('live-info').hidden = true;
  const b = $('listen');
  b.hidden = false;
  b.disabled = false;
  b.focus();
  listening = false;
  say('Stopped. Press Listen to listen again.');
}

// restart plays the stream again with player.js, from the space's start
// (from=start) or at the live edge (from empty).
function restart(from) {
  if (current !== 'low' || !listenURL) return;
  playLow(listenURL, from, true);
}

// ---- How far behind live ----
//
// player.js knows (Amphi-Behind, the wall clock and the media it played);
// for the element, what it holds beyond what it plays, as the server sends
// live audio as it comes (plus its flush, ~0.2 s); hls.js estimates it
// itself (latency).

function behindNow() {
  if (current === 'low') return window.amphiPlayer ? window.amphiPlayer.behind() : null;
  if (!current || audio.paused || audio.readyState < 2) return null;
  if (current === 'audio') {
    // The Ogg stream starts its burst behind live and the element plays it
    // from its start (currentTime 0): Amphi-Behind's sum, with the burst
    // the server could give. Its buffered end is no guide: Chromium reads
    // the stream only as it needs it (2 s ahead while 10 s behind).
    return Math.max(0, elementBurst + (performance.now() / 1000 - elementFrom) - audio.currentTime);
  }
  if (current === 'hls' && window.amphiHLS) {
    const l = window.amphiHLS.latency;
    if (Number.isFinite(l) && l > 0) return l;
  }
  // The browser's own HLS loads each part as it is published (200 ms).
  const b = audio.buffered;
  if (!b.length) return null;
  return Math.max(0, b.end(b.length - 1) - audio.currentTime) + 0.2;
}

function fmtBehind(s) {
  return s < 60 ? s.toFixed(1) + ' s' : fmtDuration(s);
}

function drawBehind() {
  const p = $('behind');
  const s = behindNow();
  const stats = current === 'low' && window.amphiPlayer ? window.amphiPlayer.stats() : null;
  const rate = stats ? stats.rate : 1;
  if (s === null) {
    p.textContent = current ? 'Finding how far behind live this plays…' : '';
    delete p.dataset.seconds;
  } else {
    let text = fmtBehind(s) + ' behind live';
    if (rate > 1) text += ', catching up (' + rate + '×)';
    p.textContent = text;
    p.dataset.seconds = s.toFixed(2);
  }
  p.dataset.rate = String(rate);
  if (stats && !stats.catching && $('status').textContent === catchingUp) say('Caught up: playing live.');
  // Jump to live only where it helps: player.js, well behind.
  $('jump-live').hidden = !(current === 'low' && s !== null && s > 2);
}

setInterval(() => { if (current) drawBehind(); }, 1000);

// The element's events, once for every stream it plays.
audio.addEventListener('playing', () => say('Playing live.'));
audio.addEventListener('ended', () => { say('The stream ended.'); loadSpace().catch(() => {}); });
audio.addEventListener('error', () => {
  if (!audio.getAttribute('src')) return; // the error of removing it below
  say('The stream stopped. Press Listen to join again.', true);
  audio.removeAttribute('src');
  $('player').hidden = true;
  $('live-info').hidden = true;
  const b = $('listen');
  b.hidden = false;
  b.disabled = false;
  b.focus();
  listening = false;
});

// showElement shows the <audio> element's player for kind (audio, native
// or hls): it only plays live, so the rewind controls stay hidden.
function showElement(kind) {
  current = kind;
  $('player').hidden = false;
  $('element-note').hidden = kind !== 'audio';
  $('listen').hidden = true;
  $('live-info').hidden = false;
  $('dvr').hidden = true;
}

// playElement plays u in the <audio> element: Ogg (kind audio), with the
// largest burst, or an HLS playlist the browser plays itself (native).
let elementFrom = 0, elementBurst = 0; // when the Ogg stream was asked for, and its burst

function playElement(u, kind) {
  audio.src = kind === 'audio' ? u + (u.includes('?') ? '&' : '?') + streamParams : u;
  elementFrom = performance.now() / 1000;
  // The burst is 10 s (streamParams), or all there is of a space on air
  // for less (by this device's clock).
  const on = space && space.started_at ? (Date.now() - Date.parse(space.started_at)) / 1000 : NaN;
  elementBurst = Number.isFinite(on) ? Math.min(Math.max(on, 0), elementBurstSeconds) : elementBurstSeconds;
  showElement(kind);
  say('Admitted. Buffering the live audio…');
  audio.play().catch(() => say('Admitted. Press play on the player to start.'));
  audio.focus();
}

$('listen').addEventListener('click', listen);
$('from-start').addEventListener('click', () => restart('start'));
$('jump-live').addEventListener('click', () => restart(''));
$('stop').addEventListener('click', stopLow);
$('arm').addEventListener('click', () => {
  armed = !armed;
  const b = $('arm');
  b.setAttribute('aria-pressed', String(armed));
  b.textContent = armed ? 'Will listen when it starts (cancel)' : 'Listen when it starts';
  say(armed ? 'This page will start listening when the space goes on air. Keep it open.' : '');
});
$('remind').addEventListener('click', remind);
for (const b of document.querySelectorAll('#react button.react')) b.addEventListener('click', tap);
$('request-form').addEventListener('submit', submitRequest);
$('request-withdraw').addEventListener('click', withdraw);

(async () => {
  try {
    if (await loadSpace() && space.state !== 'ended') poller = pollState(spaceURL, onState, onStateError);
  } catch (e) {
    $('title').textContent = 'Could not load the space';
    say(e.message, true);
  }
})();
