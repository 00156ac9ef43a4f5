// A space's speaker page: puts this browser's microphone on the stage over
// WHIP (docs/API.md, "Stage: WHIP") and plays the other speakers back.
//
// The speaker token comes in the URL fragment (#token=…), which browsers
// never send to a server, so it stays out of access logs and Referer
// headers. The page keeps it in memory only.
//
// Echo cancellation, noise suppression and automatic gain are on, as a
// speaker on laptop speakers needs. ?raw=1 turns them off: a test tone
// through them comes out mangled, and music sounds better without them.
//
// The offer is non-trickle: one sendonly m-line for the microphone and
// twelve recvonly ones, the slots on which the server sends the other
// speakers, with every ICE candidate gathered before it is posted.

const slots = 12;
const gatherTimeoutMs = 5000;
const heardPollMs = 1000;

const id = decodeURIComponent(location.pathname.split('/')[2] || '');
const token = new URLSearchParams(location.hash.slice(1)).get('token') || '';
const raw = new URLSearchParams(location.search).get('raw') === '1';
const spaceURL = '/spaces/' + encodeURIComponent(id);
const $ = (x) => document.getElementById(x);

let pc = null;        // the peer connection while on the stage
let mic = null;       // the microphone's MediaStream
let session = '';     // the WHIP session's URL, to leave with
let heardTimer = 0;
let joining = false;

function say(text, error = false) {
  const s = $('status');
  s.textContent = text;
  s.classList.toggle('error', error);
}

async function apiError(r) {
  try {
    const body = await r.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (_) { /* not JSON */ }
  return 'the server answered ' + r.status;
}

// sameOrigin keeps a URL's path and query only: the server may build
// absolute URLs from the Host it was asked on, which behind a TLS proxy
// says http.
function sameOrigin(u) {
  const x = new URL(u, location.href);
  return x.pathname + x.search;
}

// gathered resolves once ICE gathering completes, or after the timeout
// with what was gathered by then: a host with many interfaces can take
// long over the last candidates, and the ones at hand usually suffice.
function gathered(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== 'complete') return;
      pc.removeEventListener('icegatheringstatechange', done);
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      pc.removeEventListener('icegatheringstatechange', done);
      resolve();
    }, gatherTimeoutMs);
    pc.addEventListener('icegatheringstatechange', done);
  });
}

// play gives each received track a hidden, autoplaying <audio> element.
// Silent slots play silence, which costs nothing worth saving.
function play(track) {
  const a = document.createElement('audio');
  a.autoplay = true;
  a.srcObject = new MediaStream([track]);
  $('players').append(a);
  a.play().catch(() => say('On the stage. Press anywhere on the page to hear the others.'));
}

// countHeard shows how many slots carry audio: every slot has a track from
// the start, so only the packets tell a speaking one from an empty one.
function countHeard() {
  const last = new Map();
  heardTimer = setInterval(async () => {
    if (!pc) return;
    let n = 0;
    const stats = await pc.getStats();
    stats.forEach((s) => {
      if (s.type !== 'inbound-rtp' || s.kind !== 'audio') return;
      if ((s.packetsReceived || 0) > (last.get(s.id) || 0)) n++;
      last.set(s.id, s.packetsReceived || 0);
    });
    $('heard').textContent = String(n);
  }, heardPollMs);
}

async function join() {
  if (joining || pc) return;
  if (!token) {
    say('This link has no speaker token. Ask the host for a speaker link: it ends in #token=…', true);
    return;
  }
  joining = true;
  $('join').disabled = true;
  try {
    say('Asking for the microphone…');
    mic = await navigator.mediaDevices.getUserMedia({audio: raw
      ? {echoCancellation: false, noiseSuppression: false, autoGainControl: false}
      : {echoCancellation: true, noiseSuppression: true, autoGainControl: true}});
    say('Connecting to the stage…');
    pc = new RTCPeerConnection();
    const [track] = mic.getAudioTracks();
    pc.addTransceiver(track, {direction: 'sendonly', streams: [mic]});
    for (let i = 0; i < slots; i++) pc.addTransceiver('audio', {direction: 'recvonly'});
    pc.addEventListener('track', (e) => play(e.track));
    pc.addEventListener('connectionstatechange', onState);
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const whip = spaceURL + '/whip';
    const r = await fetch(whip, {
      method: 'POST',
      headers: {'Content-Type': 'application/sdp', Authorization: 'Bearer ' + token},
      body: pc.localDescription.sdp,
    });
    if (r.status !== 201) throw new Error(await apiError(r));
    const loc = r.headers.get('Location');
    if (loc) session = sameOrigin(new URL(loc, new URL(whip, location.href)).href);
    await pc.setRemoteDescription({type: 'answer', sdp: await r.text()});
    say('Connecting to the stage…');
    $('join').hidden = true;
    $('controls').hidden = false;
    countHeard();
  } catch (e) {
    await leave(false);
    say('Could not join the stage: ' + (e.message || e.name) + '. Press Join to try again.', true);
  } finally {
    joining = false;
  }
}

function onState() {
  if (!pc) return;
  switch (pc.connectionState) {
  case 'connected':
    say(muted() ? 'On the stage, muted.' : 'On the stage. Everyone hears you.');
    break;
  case 'disconnected':
    say('The connection is unsteady. Trying to keep it…', true);
    break;
  case 'failed':
    leave(false).then(() => say('The connection to the stage failed. Press Join to try again.', true));
    break;
  }
}

const muted = () => !!mic && !mic.getAudioTracks().some((t) => t.enabled);

function toggleMute() {
  if (!mic) return;
  const m = !muted();
  for (const t of mic.getAudioTracks()) t.enabled = !m;
  const b = $('mute');
  b.setAttribute('aria-pressed', String(m));
  b.textContent = m ? 'Unmute' : 'Mute';
  say(m ? 'Muted. Nobody hears you.' : 'On the stage. Everyone hears you.');
}

// leave ends the WHIP session (the server would drop it anyway once the
// connection fails, after about 5 s) and releases the microphone.
async function leave(tell = true) {
  clearInterval(heardTimer);
  const s = session;
  session = '';
  if (s) {
    try {
      await fetch(s, {method: 'DELETE', headers: {Authorization: 'Bearer ' + token}});
    } catch (_) { /* the server drops it once the connection fails */ }
  }
  if (pc) pc.close();
  pc = null;
  if (mic) for (const t of mic.getTracks()) t.stop();
  mic = null;
  $('players').replaceChildren();
  $('controls').hidden = true;
  const j = $('join');
  j.hidden = false;
  j.disabled = false;
  const m = $('mute');
  m.setAttribute('aria-pressed', 'false');
  m.textContent = 'Mute';
  $('heard').textContent = '0';
  if (tell) {
    say('You left the stage.');
    j.focus();
  }
}

$('join').addEventListener('click', join);
$('mute').addEventListener('click', toggleMute);
$('leave').addEventListener('click', () => leave());
// A page closed without Leave: keepalive lets the DELETE outlive it.
window.addEventListener('pagehide', () => {
  if (session) fetch(session, {method: 'DELETE', keepalive: true, headers: {Authorization: 'Bearer ' + token}});
});

(async () => {
  $('space-link').href = '/s/' + encodeURIComponent(id);
  if (!token) say('This link has no speaker token. Ask the host for a speaker link: it ends in #token=…', true);
  try {
    const r = await fetch(spaceURL, {headers: {Accept: 'application/json'}});
    if (r.status === 404) {
      $('title').textContent = 'No such space';
      document.title = 'No such space · amphi';
      $('join').disabled = true;
      say('This space does not exist. It may have been removed, or the link is wrong.', true);
      return;
    }
    if (!r.ok) throw new Error(await apiError(r));
    const space = await r.json();
    $('title').textContent = 'Speak in ' + space.title;
    document.title = 'Speak: ' + space.title + ' · amphi';
    const badge = $('badge');
    badge.dataset.state = space.state;
    badge.textContent = {live: 'On air', scheduled: 'Scheduled', ended: 'Ended'}[space.state] || space.state;
  } catch (e) {
    say('Could not load the space: ' + e.message, true);
  }
})();
