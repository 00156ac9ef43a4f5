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
//
// The page also polls the room's state, as a listener's page does, to show
// the stage. It cannot tell which entry is this speaker, so being taken off
// the stage shows as the connection ending: the page then joins once more,
// and a refusal saying the host removed this speaker says so. For tests,
// window.amphiSpeak.state is 'idle', 'joining', 'on stage', 'left',
// 'removed' or 'ended'.

import {apiProblem, listenersText, pollState, renderReactions, renderStage, sentence} from './stage.js';

const slots = 12;
const gatherTimeoutMs = 5000;
const heardPollMs = 1000;
const rejoinAfterMs = 30000; // one automatic rejoin per this long, so a broken network cannot loop

const id = decodeURIComponent(location.pathname.split('/')[2] || '');
const fragment = new URLSearchParams(location.hash.slice(1));
const token = fragment.get('token') || '';
const speakerName = (fragment.get('name') || '').slice(0, 60);
const raw = new URLSearchParams(location.search).get('raw') === '1';
const spaceURL = '/spaces/' + encodeURIComponent(id);
const $ = (x) => document.getElementById(x);

let pc = null;        // the peer connection while on the stage
let mic = null;       // the microphone's MediaStream
let session = '';     // the WHIP session's URL, to leave with
let heardTimer = 0;
let joining = false;
let losing = false;   // lost() is tidying up after a dropped connection
let rejoinedAt = 0;   // when the page last joined again by itself
let ended = false;    // the space is over: nothing more to join
let poller = null;

window.amphiSpeak = {state: 'idle'};
const phase = (p) => { window.amphiSpeak.state = p; };

function say(text, error = false) {
  const s = $('status');
  s.textContent = text;
  s.classList.toggle('error', error);
}

async function apiError(r) {
  return (await apiProblem(r)).message;
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
  if (joining || pc || ended) return;
  if (!token) {
    say('This link has no speaker token. Ask the host for a speaker link: it ends in #token=…', true);
    return;
  }
  joining = true;
  phase('joining');
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
    if (r.status !== 201) {
      const p = await apiProblem(r);
      throw Object.assign(new Error(p.message), {status: r.status, code: p.code});
    }
    const loc = r.headers.get('Location');
    if (loc) session = sameOrigin(new URL(loc, new URL(whip, location.href)).href);
    await pc.setRemoteDescription({type: 'answer', sdp: await r.text()});
    // The server closing DTLS (the host removed this speaker, or the space
    // ended) shows here at once; the peer connection would take up to
    // 30 s of failed consent checks to call itself failed.
    const dtls = pc.getSenders()[0] && pc.getSenders()[0].transport;
    if (dtls) {
      const own = pc; // an old connection's late event must not end a new one
      dtls.addEventListener('statechange', () => {
        if (pc === own && (dtls.state === 'closed' || dtls.state === 'failed')) lost();
      });
    }
    say('Connecting to the stage…');
    $('join').hidden = true;
    $('controls').hidden = false;
    countHeard();
  } catch (e) {
    await leave(false);
    refused(e);
  } finally {
    joining = false;
  }
}

// refused says why joining failed, in a sentence, and whether to try again.
function refused(e) {
  if (ended) return; // the page already says the space ended
  phase('idle');
  const msg = e.message || e.name;
  if (e.status === 401 && /remov/i.test(msg)) {
    phase('removed');
    $('join').disabled = true;
    say('You were removed from the stage by the host.', true);
  } else if (e.status === 401) {
    say(sentence(msg) + ' Ask the host for a new speaker link.', true);
  } else if (e.status === 409 || e.status === 410) {
    // Not on air: the state says whether it ended or has yet to start.
    say(sentence(msg) + ' Press Join once the space is on air.', true);
    if (poller) poller.now();
  } else if (e.status === 503 && e.code === 'full') {
    say('The stage is full: it has room for 13 speakers. Press Join to try again when someone leaves.', true);
  } else {
    say('Could not join the stage: ' + msg + '. Press Join to try again.', true);
  }
}

function onState(e) {
  if (!pc || e.target !== pc) return;
  switch (pc.connectionState) {
  case 'connected':
    phase('on stage');
    say(muted() ? 'On the stage, muted.' : 'On the stage. Everyone hears you.');
    break;
  case 'disconnected':
    say('The connection is unsteady. Trying to keep it…', true);
    break;
  case 'failed':
  case 'closed':
    lost();
    break;
  }
}

// lost handles a connection that ended without Leave: the space ended, the
// host removed this speaker, or the network failed. Joining again tells
// the last two apart: a removed speaker's token is refused.
async function lost() {
  if (!pc || losing) return;
  losing = true;
  try {
    await leave(false);
  } finally {
    losing = false;
  }
  phase('left');
  let st = null;
  try {
    const r = await fetch(spaceURL + '/state', {headers: {Accept: 'application/json'}, cache: 'no-store'});
    if (r.ok) st = await r.json();
  } catch (_) { /* unknown: try joining */ }
  if (st && st.state === 'ended') return spaceEnded();
  if (Date.now() - rejoinedAt < rejoinAfterMs) {
    say('The connection to the stage failed. Press Join to try again.', true);
    return;
  }
  rejoinedAt = Date.now();
  say('The connection to the stage was lost. Joining again…', true);
  join();
}

// spaceEnded takes the page off a stage that is no more.
async function spaceEnded() {
  if (ended) return;
  ended = true;
  if (poller) poller.stop();
  if (pc || session) await leave(false);
  phase('ended');
  const j = $('join');
  j.hidden = false;
  j.disabled = true;
  const badge = $('badge');
  badge.dataset.state = 'ended';
  badge.textContent = 'Ended';
  $('room').hidden = true;
  say('The space has ended. Thank you for speaking.');
}

// onRoom draws the stage from one answer of GET /spaces/{id}/state.
function onRoom(st) {
  if (st.state === 'ended') return spaceEnded();
  const badge = $('badge');
  badge.dataset.state = st.state;
  badge.textContent = {live: 'On air', scheduled: 'Scheduled'}[st.state] || st.state;
  $('room').hidden = st.state !== 'live';
  if (st.state !== 'live') return;
  $('listeners').textContent = listenersText(st.listeners);
  const rec = $('recording');
  rec.dataset.on = String(!!st.recording);
  rec.textContent = st.recording ? 'Recording' : 'Not recorded';
  renderStage($('stage'), $('stage-empty'), st.speakers);
  renderReactions($('reactions-live'), st.reactions);
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
  // Off the stage from here on: the server closing the connection in
  // answer to the DELETE must not read as a lost connection to rejoin.
  const p = pc;
  pc = null;
  const s = session;
  session = '';
  if (s) {
    try {
      await fetch(s, {method: 'DELETE', headers: {Authorization: 'Bearer ' + token}});
    } catch (_) { /* the server drops it once the connection fails */ }
  }
  if (p) p.close();
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
    phase('left');
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
  if (speakerName) {
    $('speaker-name-text').textContent = speakerName;
    $('speaker-name').hidden = false;
  }
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
    if (space.state === 'ended') {
      ended = true;
      phase('ended');
      $('join').disabled = true;
      say('This space has ended: there is no stage to join.');
      return;
    }
    poller = pollState(spaceURL, onRoom);
  } catch (e) {
    say('Could not load the space: ' + e.message, true);
  }
})();
