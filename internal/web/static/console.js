// A space's host console: starts and ends the space, mints speaker links
// (POST /spaces/{id}/tokens), shows the room live (listeners, the stage,
// requests to speak, recording, reactions) and controls it, and puts the
// host's own microphone on the stage (whip.js).
//
// Authorization: the space's host token, which this browser stored when it
// created the space (see account.js), sent as a Bearer token; or, without
// one, the signed-in account's session cookie (the space's creator, or an
// admin), with X-CSRF-Token on every POST and DELETE.
//
// Live state comes over server-sent events (GET /spaces/{id}/events), read
// with fetch: EventSource cannot send an Authorization header. After
// repeated failures it falls back to polling the state and the requests
// every 2 s, and tries the stream again every 30 s. ?poll=1 starts with
// polling; ?raw=1 turns off the microphone's echo cancellation, noise
// suppression and gain control (tests feed a pure tone).
import {$, say, apiError, hostKey, copy, me} from './account.js';
import {join as joinStage, playTrack, WHIPError} from './whip.js';

const refreshMs = 5000;         // GET /spaces/{id} and /ops
const pollMs = 2000;            // the fallback's GET state and requests
const streamIdleMs = 45000;     // the server pings every 15 s: silence this long means a dead stream
const failuresBeforePolling = 3;
const streamRetryMs = 30000;    // while polling, try the stream again this often

const id = decodeURIComponent(location.pathname.split('/')[2] || '');
const spaceURL = '/spaces/' + encodeURIComponent(id);
const query = new URLSearchParams(location.search);
const raw = query.get('raw') === '1';
const forcePoll = query.get('poll') === '1';
const verdictWords = {
  healthy: 'healthy',
  overloaded: 'overloaded: more demand than capacity',
  under_attack: 'under attack',
  failing_internally: 'failing internally',
};
const reactionWords = {clap: ['👏', 'Claps'], heart: ['❤️', 'Hearts'], laugh: ['😂', 'Laughs'], fire: ['🔥', 'Fire'], wave: ['👋', 'Waves']};

let auth = null;   // {token} for a host key, {csrf, email} for a session
let space = null;  // GET /spaces/{id}
let room = null;   // the last state event or GET /spaces/{id}/state
let busy = false;

// headers authenticates a request: the Bearer host token on every one, or
// for a session the CSRF header on state-changing ones (the cookie rides
// along by itself).
function headers(method) {
  if (auth.token) return {Authorization: 'Bearer ' + auth.token};
  return method === 'GET' || method === 'HEAD' ? {} : {'X-CSRF-Token': auth.csrf};
}

function host(method, path, body) {
  const h = {...headers(method), Accept: 'application/json'};
  if (body) h['Content-Type'] = 'application/json';
  return fetch(spaceURL + path, {method, headers: h, body: body ? JSON.stringify(body) : undefined, cache: 'no-store'});
}

// refusal words an error answer to a host action.
async function refusal(r, what) {
  const msg = await apiError(r);
  if (r.status === 401 || r.status === 403) {
    if (auth.token) return 'The server refused this browser\'s host key for this space: ' + msg;
    if (r.status === 401) showSignIn();
    return 'The server refused your account for this space: ' + msg
      + (r.status === 401 ? '. Sign in again.' : '');
  }
  if (r.status === 429) return 'Too many requests: wait a moment and ' + what + ' again.';
  return 'Could not ' + what + ': ' + msg;
}

function showSignIn() {
  $('signin-link').href = '/signin?next=' + encodeURIComponent(location.pathname + location.search);
  $('signin-next').hidden = false;
}

// keep moves focus out of an element about to be removed, to the next
// item's first button or else to the section's heading, so a keyboard
// user is not dropped to the top of the page.
function keep(li, heading) {
  if (!li.contains(document.activeElement)) return;
  const next = (li.nextElementSibling || li.previousElementSibling);
  const b = next && next.querySelector('button');
  if (b) b.focus();
  else {
    heading.tabIndex = -1;
    heading.focus();
  }
}

// ---- the space itself: GET /spaces/{id}, start, end, speaker links ----

function show(sp) {
  const was = space && space.state;
  space = sp;
  $('title').textContent = sp.title;
  document.title = 'Console: ' + sp.title + ' · amphi';
  const badge = $('state');
  badge.dataset.state = sp.state;
  badge.textContent = {live: 'On air', scheduled: 'Scheduled', ended: 'Ended'}[sp.state] || sp.state;
  let when = '';
  if (sp.state === 'scheduled' && sp.scheduled_at) when = 'Scheduled for ' + new Date(sp.scheduled_at).toLocaleString([], {dateStyle: 'medium', timeStyle: 'short'});
  else if (sp.state === 'live' && sp.started_at) when = 'On air since ' + new Date(sp.started_at).toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'});
  else if (sp.state === 'ended' && sp.ended_at) when = 'Ended ' + new Date(sp.ended_at).toLocaleString([], {dateStyle: 'medium', timeStyle: 'short'});
  $('when').textContent = when;
  const ended = sp.state === 'ended';
  $('start').hidden = sp.state !== 'scheduled';
  $('end').hidden = ended;
  $('invite').disabled = ended;
  $('recording').disabled = ended;
  $('host-speak').disabled = sp.state !== 'live' || joining;
  if (!room) $('speakers').textContent = String(sp.speakers || 0);
  // The room (its stream, requests, stage) exists only while on air.
  if (sp.state === 'live' && auth && !live.started) startLive();
  if (ended && was !== 'ended') {
    stopLive();
    if (stage) leaveStage(false);
    $('transport').textContent = 'The space has ended: nothing more to show live.';
    $('transport').dataset.transport = '';
  }
}

async function load() {
  const r = await fetch(spaceURL, {headers: {Accept: 'application/json'}, cache: 'no-store'});
  if (r.status === 404) {
    $('title').textContent = 'No such space';
    $('console').hidden = true;
    say('This space does not exist. It may have been removed, or the link is wrong.', true);
    return false;
  }
  if (!r.ok) throw new Error(await apiError(r));
  show(await r.json());
  return true;
}

async function verdict() {
  const v = $('verdict');
  try {
    const r = await host('GET', '/health');
    if (!r.ok) throw new Error(String(r.status));
    const body = await r.json();
    v.dataset.verdict = body.verdict;
    v.textContent = verdictWords[body.verdict] || body.verdict;
  } catch (_) {
    v.dataset.verdict = '';
    v.textContent = 'unknown (the server did not answer)';
  }
}

async function act(button, path, doing, done, what) {
  if (busy) return;
  busy = true;
  button.disabled = true;
  say(doing);
  try {
    const r = await host('POST', path);
    if (!r.ok) say(await refusal(r, what), true);
    else say(done);
    await load();
  } catch (err) {
    say('Could not reach the server: ' + err.message, true);
  } finally {
    busy = false;
    button.disabled = false;
  }
}

async function invite(e) {
  e.preventDefault();
  const b = $('invite');
  b.disabled = true;
  say('Making a speaker link…');
  try {
    const name = $('speaker-name').value.trim();
    const body = {role: 'speaker'};
    if (name) body.name = name;
    const r = await host('POST', '/tokens', body);
    if (r.status !== 201) {
      say(await refusal(r, 'make a speaker link'), true);
      return;
    }
    const t = await r.json();
    $('speak').value = location.origin + '/s/' + encodeURIComponent(id) + '/speak#token=' + encodeURIComponent(t.token);
    $('invite-panel').hidden = false;
    const until = t.expires_at ? new Date(t.expires_at) : null;
    say('A new speaker link' + (t.name ? ' for ' + t.name : '') + ' is ready below'
      + (until && !isNaN(until) ? ', valid until ' + until.toLocaleString([], {dateStyle: 'medium', timeStyle: 'short'}) : '')
      + ': copy it and send it to your speaker.');
    $('speaker-name').value = '';
    $('copy-speak').focus();
  } catch (err) {
    say('Could not make a speaker link: ' + err.message, true);
  } finally {
    b.disabled = !!space && space.state === 'ended';
  }
}

// ---- the room: stage, requests, recording, reactions ----

function speakerName(sp) {
  return sp.name || 'Unnamed speaker';
}

// el makes an element with a class and, optionally, its text.
function el(tag, className, text = '') {
  const e = document.createElement(tag);
  e.className = className;
  e.textContent = text;
  return e;
}

// smallButton makes a row's button; data-{key} holds the row's id, which
// the list's click handler reads.
function smallButton(className, key, id, text = '') {
  const b = el('button', ('small-button ' + className).trim(), text);
  b.type = 'button';
  b.dataset[key] = id;
  return b;
}

// row makes a list item: who it is about, then its buttons.
function row(who, buttons) {
  const li = document.createElement('li');
  const w = el('span', 'who');
  w.append(...who);
  const b = el('span', 'buttons');
  b.append(...buttons);
  li.append(w, b);
  return li;
}

function stageItem(sp) {
  const li = row([el('span', 'name'), el('span', 'tag', 'host'), el('span', 'talk')],
    [smallButton('', 'mute', sp.id), smallButton('danger', 'remove', sp.id, 'Remove')]);
  li.dataset.sid = sp.id;
  return li;
}

// updateStageItem shows a speaker's state in words as well as in colour:
// "speaking", "silent" or "muted".
function updateStageItem(li, sp) {
  const n = speakerName(sp);
  li.dataset.speaking = String(!!sp.speaking && !sp.muted);
  li.dataset.muted = String(!!sp.muted);
  li.dataset.host = String(!!sp.host);
  li.querySelector('.name').textContent = n;
  li.querySelector('.tag').hidden = !sp.host;
  li.querySelector('.talk').textContent = sp.muted ? 'muted' : (sp.speaking ? 'speaking' : 'silent');
  const mute = li.querySelector('[data-mute]');
  mute.textContent = sp.muted ? 'Unmute' : 'Mute';
  mute.setAttribute('aria-label', (sp.muted ? 'Unmute ' : 'Mute ') + n);
  mute.dataset.muted = String(!!sp.muted);
  const remove = li.querySelector('[data-remove]');
  remove.setAttribute('aria-label', 'Remove ' + n + ' from the stage');
  // Removing revokes the speaker's token: on a host-token speaker (this
  // console's own microphone, or a host's OBS) that would lock the host
  // out, so the host leaves the stage with Leave stage instead.
  remove.hidden = !!sp.host;
}

// reconcile updates a list in place, keyed by data-key, so a button that
// has focus survives the state arriving every few hundred milliseconds.
function reconcile(ul, key, items, create, update, heading) {
  const have = new Map([...ul.children].map((li) => [li.dataset[key], li]));
  const want = new Set(items.map((x) => x.id));
  for (const [k, li] of have) {
    if (!want.has(k)) {
      keep(li, heading);
      li.remove();
    }
  }
  let prev = null;
  for (const x of items) {
    let li = have.get(x.id);
    if (!li || !li.isConnected) li = create(x);
    update(li, x);
    const at = prev ? prev.nextElementSibling : ul.firstElementChild;
    if (at !== li) ul.insertBefore(li, at);
    prev = li;
  }
}

function renderStage(speakers) {
  reconcile($('stage'), 'sid', speakers, stageItem, updateStageItem, $('stage-heading'));
  $('stage-empty').hidden = speakers.length > 0;
  $('speakers').textContent = String(speakers.length);
}

function requestItem(rq) {
  const li = row([el('span', 'name'), el('span', 'meta')],
    [smallButton('primary', 'approve', rq.id, 'Approve'), smallButton('', 'decline', rq.id, 'Decline')]);
  li.dataset.request = rq.id;
  return li;
}

function updateRequestItem(li, rq) {
  const n = rq.name || 'Someone';
  li.dataset.name = n;
  li.querySelector('.name').textContent = n;
  const t = rq.created_at ? new Date(rq.created_at) : null;
  li.querySelector('.meta').textContent = t && !isNaN(t)
    ? 'asked at ' + t.toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'}) : '';
  li.querySelector('[data-approve]').setAttribute('aria-label', 'Approve ' + n);
  li.querySelector('[data-decline]').setAttribute('aria-label', 'Decline ' + n);
}

let requests = [];

function renderRequests(list) {
  requests = list;
  reconcile($('requests'), 'request', list, requestItem, updateRequestItem, $('requests-heading'));
  $('requests-empty').hidden = list.length > 0;
  $('requests-count').textContent = list.length ? '(' + list.length + ')' : '';
}

function renderRecording(on) {
  const b = $('recording');
  b.setAttribute('aria-pressed', String(!!on));
  $('recording-state').textContent = on
    ? 'On: everything said on stage is recorded. Press to pause the recording.'
    : 'Paused: nothing is recorded until you press Record again.';
}

function renderReactions(counts) {
  const items = Object.entries(counts || {}).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
  $('reactions').replaceChildren(...items.map(([kind, n]) => {
    const li = document.createElement('li');
    li.dataset.kind = kind;
    const [icon, word] = reactionWords[kind] || ['', kind];
    const i = document.createElement('span');
    i.setAttribute('aria-hidden', 'true');
    i.textContent = icon;
    li.append(i, ' ' + word + ': ' + n);
    return li;
  }));
  $('reactions-empty').hidden = items.length > 0;
}

function renderState(s) {
  room = s;
  $('listeners').textContent = String(s.listeners || 0);
  $('waiting').textContent = s.waiting ? '(+' + s.waiting + ' waiting to get in)' : '';
  renderStage(s.speakers || []);
  renderRecording(!!s.recording);
  renderReactions(s.reactions);
  // The count arrives with every state, the list only with a requests
  // event or a poll: when they disagree while streaming, ask for the list.
  if (!live.polling && typeof s.requests === 'number' && s.requests !== requests.length) syncRequests();
  if (space && s.state && s.state !== space.state) load().catch(() => {});
}

let syncing = 0;

// syncRequests reads the pending requests once, at most every 2 s.
function syncRequests() {
  if (syncing) return;
  syncing = setTimeout(() => { syncing = 0; }, pollMs);
  host('GET', '/requests').then(async (r) => {
    if (r.ok) renderRequests((await r.json()).requests || []);
  }).catch(() => {});
}

async function mute(sid, muted) {
  say(muted ? 'Muting…' : 'Unmuting…');
  try {
    const r = await host('POST', '/speakers/' + encodeURIComponent(sid) + '/mute', {muted});
    if (!r.ok) {
      say(r.status === 404 ? 'That speaker is no longer on stage.' : await refusal(r, muted ? 'mute' : 'unmute'), true);
      return;
    }
    const sp = await r.json().catch(() => null);
    const li = $('stage').querySelector('li[data-sid="' + CSS.escape(sid) + '"]');
    if (li && sp && sp.id) updateStageItem(li, sp);
    const n = sp && sp.name ? sp.name : 'The speaker';
    say(muted ? n + ' is muted: nobody hears them until you unmute them.' : n + ' is unmuted.');
  } catch (err) {
    say('Could not reach the server: ' + err.message, true);
  }
}

async function remove(sid) {
  const sp = room && (room.speakers || []).find((x) => x.id === sid);
  const n = sp ? speakerName(sp) : 'this speaker';
  if (!confirm('Take ' + n + ' off the stage? Their speaker link stops working.')) return;
  say('Removing ' + n + '…');
  try {
    const r = await host('DELETE', '/speakers/' + encodeURIComponent(sid));
    if (!r.ok && r.status !== 404) {
      say(await refusal(r, 'remove ' + n), true);
      return;
    }
    const li = $('stage').querySelector('li[data-sid="' + CSS.escape(sid) + '"]');
    if (li) {
      keep(li, $('stage-heading'));
      li.remove();
      $('stage-empty').hidden = $('stage').children.length > 0;
    }
    say(r.status === 404 ? n + ' had already left the stage.' : n + ' is off the stage and their speaker link no longer works.');
  } catch (err) {
    say('Could not reach the server: ' + err.message, true);
  }
}

async function answer(rid, verb) {
  const rq = requests.find((x) => x.id === rid);
  const n = rq ? rq.name : 'Someone';
  say((verb === 'approve' ? 'Approving ' : 'Declining ') + n + '…');
  try {
    const r = await host('POST', '/requests/' + encodeURIComponent(rid) + '/' + verb);
    let gone = false;
    if (r.ok) {
      say(verb === 'approve'
        ? 'Approved ' + n + ': their page now lets them onto the stage.'
        : 'Declined ' + n + '.');
      gone = true;
    } else if (r.status === 409) {
      say(n + '\'s request was already answered.', true);
      gone = true;
    } else if (r.status === 404) {
      say(n + ' withdrew the request, or their page closed.', true);
      gone = true;
    } else {
      say(await refusal(r, verb + ' ' + n), true);
    }
    if (gone) renderRequests(requests.filter((x) => x.id !== rid));
  } catch (err) {
    say('Could not reach the server: ' + err.message, true);
  }
}

async function toggleRecording() {
  const b = $('recording');
  const on = b.getAttribute('aria-pressed') !== 'true';
  b.disabled = true;
  say(on ? 'Turning the recording on…' : 'Pausing the recording…');
  try {
    const r = await host('POST', '/recording', {on});
    if (!r.ok) {
      say(await refusal(r, on ? 'turn the recording on' : 'pause the recording'), true);
      return;
    }
    const body = await r.json().catch(() => ({recording: on}));
    renderRecording(!!body.recording);
    say(body.recording ? 'Recording.' : 'The recording is paused: nothing is recorded until you turn it on.');
  } catch (err) {
    say('Could not reach the server: ' + err.message, true);
  } finally {
    b.disabled = !!space && space.state === 'ended';
  }
}

// ---- live updates: the event stream, or polling when it fails ----

const live = {started: false, stopped: false, ctrl: null, failures: 0, timer: 0, pollTimer: 0, polling: false};

function setTransport(mode) {
  const t = $('transport');
  t.dataset.transport = mode;
  t.textContent = {
    events: 'Live updates: streaming.',
    polling: 'Live updates: every 2 seconds (the live stream is unavailable).',
    connecting: 'Live updates: connecting…',
  }[mode] || '';
}

function startLive() {
  live.started = true;
  live.stopped = false;
  if (forcePoll) {
    startPolling();
    return;
  }
  setTransport('connecting');
  stream();
}

function stopLive() {
  live.stopped = true;
  live.started = false;
  clearTimeout(live.timer);
  if (live.ctrl) live.ctrl.abort();
  stopPolling();
}

// handle applies one server-sent event.
function handle(event, data) {
  let body;
  try {
    body = JSON.parse(data);
  } catch (_) {
    return false; // a malformed event: skip it, the next state replaces it
  }
  if (event === 'state') renderState(body);
  else if (event === 'requests') renderRequests(body.requests || []);
  else if (event === 'end') load().catch(() => {});
  return true;
}

// stream reads GET /spaces/{id}/events until it ends or fails, then
// schedules the next try: 1, 2, 4 s, and after three tries without a
// single event, every 30 s while polling covers the gap.
async function stream() {
  if (live.stopped) return;
  const ctrl = new AbortController();
  live.ctrl = ctrl;
  let got = false;
  let idle = 0;
  const watch = () => {
    clearTimeout(idle);
    idle = setTimeout(() => ctrl.abort(), streamIdleMs);
  };
  let why = '';
  try {
    watch();
    const r = await fetch(spaceURL + '/events', {
      headers: {...headers('GET'), Accept: 'text/event-stream'}, cache: 'no-store', signal: ctrl.signal,
    });
    if (!r.ok || !r.body) {
      // A refused account or key is worth saying; a full or failing
      // stream is covered by polling, which the transport line says.
      if (r.status === 401 || r.status === 403) why = await refusal(r, 'follow the room live');
      throw new Error(String(r.status));
    }
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let event = '';
    let data = [];
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      watch();
      buf += value;
      let i;
      // Lines end in \n (a trailing \r is dropped); a blank line ends an
      // event; a line starting with ':' is a comment (the 15 s ping).
      while ((i = buf.indexOf('\n')) >= 0) {
        let line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.endsWith('\r')) line = line.slice(0, -1);
        if (line === '') {
          if (data.length && handle(event || 'message', data.join('\n')) && event === 'state' && !got) {
            got = true;
            live.failures = 0;
            stopPolling();
            setTransport('events');
          }
          event = '';
          data = [];
          continue;
        }
        if (line[0] === ':') continue;
        const c = line.indexOf(':');
        const field = c < 0 ? line : line.slice(0, c);
        let v = c < 0 ? '' : line.slice(c + 1);
        if (v[0] === ' ') v = v.slice(1);
        if (field === 'event') event = v;
        else if (field === 'data') data.push(v);
      }
    }
  } catch (_) {
    /* counted below */
  } finally {
    clearTimeout(idle);
  }
  if (live.stopped) return;
  if (space && space.state === 'ended') return;
  if (got) live.failures = 0;
  live.failures++;
  if (live.failures >= failuresBeforePolling) {
    if (!live.polling) {
      startPolling();
      if (why) say(why, true);
    }
  } else if (!live.polling) {
    setTransport('connecting');
  }
  const delay = live.failures >= failuresBeforePolling ? streamRetryMs : 1000 * 2 ** (live.failures - 1);
  live.timer = setTimeout(stream, delay + Math.random() * 500);
}

function startPolling() {
  if (live.polling) return;
  live.polling = true;
  setTransport('polling');
  poll();
}

function stopPolling() {
  live.polling = false;
  clearTimeout(live.pollTimer);
}

let pollSaid = '';

// poll reads the state (cacheable, the same for every page) and the
// requests (host only) every 2 s, skipping while the page is hidden.
async function poll() {
  if (!live.polling) return;
  if (!document.hidden) {
    try {
      const [s, q] = await Promise.all([
        fetch(spaceURL + '/state', {headers: {Accept: 'application/json'}, cache: 'no-cache'}),
        host('GET', '/requests'),
      ]);
      if (s.ok) renderState(await s.json());
      if (q.ok) {
        renderRequests((await q.json()).requests || []);
        pollSaid = '';
      } else {
        const msg = await refusal(q, 'list the requests to speak');
        if (msg !== pollSaid) say(msg, true);
        pollSaid = msg;
      }
    } catch (_) { /* the next poll tries again */ }
  }
  if (live.polling) live.pollTimer = setTimeout(poll, pollMs);
}

// ---- speaking from this browser ----

let stage = null;
let joining = false;

function setStage(s) {
  $('host-stage').dataset.stage = s;
}

function play(track) {
  playTrack(track, $('host-players'), () => say('On the stage. Press anywhere on the page to hear the other speakers.'));
}

function onStageState(st) {
  if (!stage) return;
  if (st === 'connected') {
    setStage('connected');
    say(stage.muted ? 'On the stage from this browser, muted.' : 'On the stage from this browser. Everyone hears you.');
  } else if (st === 'disconnected') {
    say('The connection to the stage is unsteady. Trying to keep it…', true);
  } else if (st === 'failed') {
    leaveStage(false).then(() => say('The connection to the stage failed. Press Speak to try again.', true));
  }
}

function stageError(e) {
  if (e instanceof WHIPError) {
    if (e.status === 401 || e.status === 403) {
      return auth.token ? 'The server refused this browser\'s host key: ' + e.message
        : 'The server refused your account: ' + e.message;
    }
    if (e.status === 503) return 'The stage is full or not ready: ' + e.message;
    if (e.status === 409) return 'The space is not on air: ' + e.message;
    return 'The server refused: ' + e.message;
  }
  if (e && e.name === 'NotAllowedError') return 'This browser may not use the microphone: allow it (the icon in the address bar) and press Speak again.';
  if (e && e.name === 'NotFoundError') return 'This device has no microphone.';
  if (e && e.name === 'NotReadableError') return 'The microphone is busy in another program.';
  return (e && (e.message || e.name)) || 'unknown error';
}

async function speak() {
  if (joining || stage) return;
  joining = true;
  $('host-speak').disabled = true;
  setStage('joining');
  say('Asking for the microphone, then connecting to the stage…');
  try {
    stage = await joinStage({
      whipURL: spaceURL + '/whip', headers: headers('POST'), raw, onTrack: play, onState: onStageState,
      onHeard: (n) => { $('host-heard').textContent = String(n); },
      // The server closed the session (the space ended, or this host's
      // stage place went to another tab): say so at once.
      onEnd: () => leaveStage(false).then(() => say('You are no longer on the stage from this browser. Press Speak to go back on.', true)),
    });
    setStage('connecting');
    say('Connecting to the stage…');
    $('host-speak').hidden = true;
    $('host-controls').hidden = false;
    $('host-mute').focus();
  } catch (e) {
    setStage('off');
    say('Could not go on stage: ' + stageError(e), true);
  } finally {
    joining = false;
    $('host-speak').disabled = !space || space.state !== 'live';
  }
}

function toggleMic() {
  if (!stage) return;
  const m = !stage.muted;
  stage.setMuted(m);
  $('host-mute').setAttribute('aria-pressed', String(m));
  say(m ? 'Your microphone is muted: nobody hears you.' : 'Your microphone is on: everyone hears you.');
}

async function leaveStage(tell = true) {
  const s = stage;
  stage = null;
  if (s) await s.leave();
  $('host-players').replaceChildren();
  $('host-controls').hidden = true;
  $('host-speak').hidden = false;
  $('host-speak').disabled = !space || space.state !== 'live';
  $('host-mute').setAttribute('aria-pressed', 'false');
  $('host-heard').textContent = '0';
  setStage('off');
  if (tell) {
    say('You left the stage.');
    $('host-speak').focus();
  }
}

// ---- wiring ----

$('start').addEventListener('click', () => act($('start'), '/start', 'Going live…', 'On air.', 'go live'));
$('end').addEventListener('click', () => {
  if (!confirm('End “' + (space ? space.title : id) + '” for everyone? Speakers are cut off and it cannot go live again.')) return;
  act($('end'), '/end', 'Ending the space…', 'The space has ended. Its recording is on its page.', 'end the space');
});
$('invite-form').addEventListener('submit', invite);
$('copy-share').addEventListener('click', () => copy($('share')));
$('copy-speak').addEventListener('click', () => copy($('speak')));
$('recording').addEventListener('click', toggleRecording);
$('stage').addEventListener('click', (e) => {
  const b = e.target.closest('button');
  if (!b) return;
  if (b.dataset.mute) mute(b.dataset.mute, b.dataset.muted !== 'true');
  else if (b.dataset.remove) remove(b.dataset.remove);
});
$('requests').addEventListener('click', (e) => {
  const b = e.target.closest('button');
  if (!b) return;
  if (b.dataset.approve) answer(b.dataset.approve, 'approve');
  else if (b.dataset.decline) answer(b.dataset.decline, 'decline');
});
$('host-speak').addEventListener('click', speak);
$('host-mute').addEventListener('click', toggleMic);
$('host-leave').addEventListener('click', () => leaveStage());
// A page closed without Leave stage: keepalive lets the DELETE outlive it.
window.addEventListener('pagehide', () => {
  if (stage) stage.leave(true);
});

// authorize picks this console's credentials: the host key this browser
// holds, or else the signed-in account if the server lets it run this
// space (GET /spaces/{id}/requests is for hosts only and changes nothing).
async function authorize() {
  const key = hostKey(id);
  if (key) return {token: key.token};
  let acct = null;
  try {
    acct = await me();
  } catch (_) {
    return null;
  }
  if (!acct) return null;
  const r = await fetch(spaceURL + '/requests', {headers: {Accept: 'application/json'}, cache: 'no-store'});
  if (r.status === 401 || r.status === 403) return {refused: acct.user.email};
  return {csrf: acct.csrf, email: acct.user.email};
}

(async () => {
  $('space-link').href = '/s/' + encodeURIComponent(id);
  setStage('off');
  try {
    if (!await load()) return;
  } catch (err) {
    say('Could not load the space: ' + err.message, true);
    return;
  }
  try {
    auth = await authorize();
  } catch (err) {
    say('Could not check your sign-in: ' + err.message, true);
    return;
  }
  if (!auth || auth.refused) {
    $('console').hidden = true;
    $('title').textContent = 'No host key here';
    say('This browser holds no host key for this space'
      + (auth ? ', and your account (' + auth.refused + ') is not its host. ' : ', and you are not signed in. ')
      + 'The console works in the browser that created the space, or signed in as its host or an admin. '
      + 'Listeners can still use the space\'s page.', true);
    showSignIn();
    return;
  }
  $('share').value = location.origin + '/s/' + encodeURIComponent(id);
  renderRecording(false);
  $('recording-state').textContent = '';
  $('console').hidden = false;
  if (!auth.token) say('Running this space as ' + auth.email + '.');
  if (space.state === 'live') startLive();
  else if (space.state === 'scheduled') $('transport').textContent = 'Live updates start when the space goes on air.';
  else $('transport').textContent = 'The space has ended: nothing more to show live.';
  verdict();
  setInterval(() => {
    if (document.hidden) return;
    load().catch(() => {});
    verdict();
  }, refreshMs);
})();
