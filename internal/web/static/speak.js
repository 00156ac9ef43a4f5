// A space's speaker page: puts this browser's microphone on the stage over
// WHIP (whip.js, shared with the host console) and plays the other
// speakers back.
//
// The speaker token comes in the URL fragment (#token=…), which browsers
// never send to a server, so it stays out of access logs and Referer
// headers. The page keeps it in memory only. ?raw=1 turns the microphone's
// echo cancellation, noise suppression and automatic gain off.
//
// The page also polls the room's state, as a listener's page does, to show
// the stage. It cannot tell which entry is this speaker, so being taken off
// the stage shows as the connection ending: the page then joins again, and
// a refusal saying the host removed this speaker says so. A connection
// lost otherwise (the server restarted, the network dropped) is joined
// again with backoff, as `amphi speak` does, until the server answers.
// For tests, window.amphiSpeak.state is 'idle', 'joining', 'on stage',
// 'left', 'removed' or 'ended'.

import {apiProblem, listenersText, pollState, renderReactions, renderStage, sentence} from './stage.js';
import {join as joinStage, playTrack} from './whip.js';

// Joining again by itself waits from a quarter second, so a restarted
// server is found soon after it is back, doubling up to 5 s, so one gone
// for long is not hammered.
const firstRejoinMs = 250;
const maxRejoinMs = 5000;
// A connection 'disconnected' this long is taken as lost: Chromium calls
// one whose server vanished 'failed' only after ~30 s.
const unsteadyMs = 2000;

const id = decodeURIComponent(location.pathname.split('/')[2] || '');
const fragment = new URLSearchParams(location.hash.slice(1));
const token = fragment.get('token') || '';
const speakerName = (fragment.get('name') || '').slice(0, 60);
const raw = new URLSearchParams(location.search).get('raw') === '1';
const spaceURL = '/spaces/' + encodeURIComponent(id);
const $ = (x) => document.getElementById(x);

let stage = null;     // the WHIP session (whip.js) while on the stage
let joining = false;
let losing = false;   // lost() is tidying up after a dropped connection
let rejoinMs = 0;     // the next automatic join's delay; 0 unless rejoining
let rejoinTimer = 0;
let unsteadyTimer = 0;
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

function play(track) {
  playTrack(track, $('players'), () => say('On the stage. Press anywhere on the page to hear the others.'));
}

async function join() {
  if (joining || stage || ended) return;
  if (!token) {
    say('This link has no speaker token. Ask the host for a speaker link: it ends in #token=…', true);
    return;
  }
  joining = true;
  phase('joining');
  $('join').disabled = true;
  try {
    say('Asking for the microphone…');
    const s = await joinStage({
      whipURL: spaceURL + '/whip',
      headers: {Authorization: 'Bearer ' + token},
      raw,
      onMicrophone: () => say('Connecting to the stage…'),
      onTrack: play,
      onState,
      onHeard: (n) => { $('heard').textContent = String(n); },
      onEnd: lost,
    });
    if (ended) {
      // The space ended while this was joining: nothing to stay on.
      await s.leave();
      $('players').replaceChildren();
      return;
    }
    stage = s;
    say('Connecting to the stage…');
    $('join').hidden = true;
    $('controls').hidden = false;
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
  const down = !e.status || (e.status >= 500 && e.code !== 'full'); // no answer, or not now
  if (rejoinMs && down) {
    rejoinSoon('The stage is not answering.');
  } else if (e.status === 401 && /remov/i.test(msg)) {
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

// onState follows the connection; its end is lost()'s to handle.
function onState(st) {
  if (!stage) return;
  clearTimeout(unsteadyTimer);
  if (st === 'connected') {
    rejoinMs = 0;
    phase('on stage');
    say(stage.muted ? 'On the stage, muted.' : 'On the stage. Everyone hears you.');
  } else if (st === 'disconnected') {
    say('The connection is unsteady. Trying to keep it…', true);
    unsteadyTimer = setTimeout(lost, unsteadyMs);
  }
}

// lost handles a connection that ended without Leave: the space ended, the
// host removed this speaker, or the network failed. Joining again tells
// the last two apart: a removed speaker's token is refused.
async function lost() {
  if (!stage || losing) return;
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
  rejoinSoon('The connection to the stage was lost.');
}

// rejoinSoon joins again after the backoff, which doubles for the next try
// and starts over once on the stage.
function rejoinSoon(why) {
  rejoinMs = Math.min(rejoinMs ? 2 * rejoinMs : firstRejoinMs, maxRejoinMs);
  say(why + ' Joining again…', true);
  clearTimeout(rejoinTimer);
  rejoinTimer = setTimeout(join, rejoinMs);
}

// spaceEnded takes the page off a stage that is no more.
async function spaceEnded() {
  if (ended) return;
  ended = true;
  if (poller) poller.stop();
  if (stage) await leave(false);
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

function toggleMute() {
  if (!stage) return;
  const m = !stage.muted;
  stage.setMuted(m);
  const b = $('mute');
  b.setAttribute('aria-pressed', String(m));
  b.textContent = m ? 'Unmute' : 'Mute';
  say(m ? 'Muted. Nobody hears you.' : 'On the stage. Everyone hears you.');
}

// leave ends the WHIP session, if any, and puts the page back as it was
// before Join.
async function leave(tell = true) {
  // Off the stage from here on: the server closing the connection in
  // answer to the DELETE must not read as a lost connection to rejoin.
  clearTimeout(unsteadyTimer);
  if (tell) {
    clearTimeout(rejoinTimer);
    rejoinMs = 0;
  }
  const s = stage;
  stage = null;
  if (s) await s.leave();
  $('players').replaceChildren();
  $('controls').hidden = true;
  const j = $('join');
  j.hidden = false;
  j.disabled = ended; // a join that failed as the space ended stays off
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
  if (stage) stage.leave(true);
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
