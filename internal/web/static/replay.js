// A space's replay: its recording in an <audio> element, with a seek bar
// and speeds of 1x, 1.5x and 2x. The server answers Range requests on the
// recording, so the browser seeks by asking for the bytes it needs (its
// Ogg demuxer bisects by granule position): seeking is exact and does not
// download what it skips. ?t=90 starts at 90 s, as a shared link asks.
// Under the seek bar, who spoke when and the reactions' peaks.

const id = decodeURIComponent(location.pathname.split('/')[2] || '');
const $ = (x) => document.getElementById(x);
const spaceURL = '/spaces/' + encodeURIComponent(id);
const audio = $('audio');

function say(text, error = false) {
  const s = $('status');
  s.textContent = text;
  s.classList.toggle('error', error);
}

function clock(s) {
  if (!isFinite(s)) return '0:00';
  s = Math.floor(s);
  const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, sec = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

function showTime() {
  const seek = $('seek');
  if (!seek.matches(':active')) seek.value = String(audio.currentTime);
  seek.setAttribute('aria-valuetext', clock(audio.currentTime));
  $('at').textContent = clock(audio.currentTime);
  if (timelineLength > 0) $('timeline').style.setProperty('--at', share(audio.currentTime, timelineLength));
}

// The timeline under the seek bar (GET /spaces/{id}/timeline): a lane per
// speaker with the stretches they were heard in, and a strip of the
// reactions with their peaks marked, all in proportion to the recording.
// Every stretch and peak is a button that seeks to its start, labelled
// with who and when. Without a timeline the replay plays as before.
let timelineLength = 0;

// share is s as a share of length, for a CSS left or width.
function share(s, length) {
  return Math.max(0, Math.min(100, (s / length) * 100)) + '%';
}

function seekTo(s) {
  audio.currentTime = s;
  showTime();
}

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

function kindsText(kinds) {
  return Object.entries(kinds).sort((a, b) => b[1] - a[1]).map(([k, n]) => `${n} ${k}`).join(', ');
}

async function loadTimeline(length) {
  let tl;
  try {
    const r = await fetch(spaceURL + '/timeline');
    if (!r.ok) return;
    tl = await r.json();
  } catch {
    return;
  }
  if (!(length > 0 && isFinite(length))) length = tl.duration_s;
  if (!(length > 0)) return;
  timelineLength = length;
  const lanes = $('lanes');
  lanes.replaceChildren();
  for (const sp of tl.speakers) {
    const lane = el('div', 'lane');
    lane.setAttribute('role', 'group');
    lane.setAttribute('aria-label', sp.name);
    const track = el('div', 'track');
    for (const [from, to] of sp.spans) {
      const b = el('button', 'span');
      b.type = 'button';
      b.dataset.from = String(from);
      b.title = `${sp.name}, ${clock(from)} to ${clock(to)}`;
      b.setAttribute('aria-label', b.title);
      b.style.left = share(from, length);
      b.style.width = share(to - from, length);
      b.addEventListener('click', () => seekTo(from));
      track.append(b);
    }
    lane.append(el('span', 'lane-name', sp.name), track);
    lanes.append(lane);
  }
  const strip = $('reactions');
  strip.replaceChildren();
  const most = Math.max(1, ...tl.reactions.map((m) => m.count));
  const bucket = tl.bucket_s || 5;
  // The last bucket may go past the end of the recording: cut it there.
  const end = (at) => Math.min(at + bucket, length);
  for (const m of tl.reactions) {
    const bar = el('div', 'bar');
    bar.setAttribute('aria-hidden', 'true');
    bar.style.left = share(m.at_s, length);
    bar.style.width = share(end(m.at_s) - m.at_s, length);
    bar.style.height = (m.count / most) * 100 + '%';
    strip.append(bar);
  }
  for (const p of tl.peaks) {
    const b = el('button', 'peak', '▲');
    b.type = 'button';
    b.dataset.from = String(p.at_s);
    b.title = `Peak: ${p.count} reactions at ${clock(p.at_s)} (${kindsText(p.kinds)})`;
    b.setAttribute('aria-label', b.title);
    b.style.left = share((p.at_s + end(p.at_s)) / 2, length);
    b.addEventListener('click', () => seekTo(p.at_s));
    strip.append(b);
  }
  $('reactions-lane').hidden = tl.reactions.length === 0;
  $('timeline').hidden = tl.speakers.length === 0 && tl.reactions.length === 0;
  showTime();
}

async function load() {
  $('space-link').href = '/s/' + encodeURIComponent(id);
  let space;
  try {
    const r = await fetch(spaceURL);
    if (!r.ok) throw new Error(r.status === 404 ? 'There is no such space.' : 'The space could not be loaded.');
    space = await r.json();
  } catch (e) {
    say(e.message, true);
    return;
  }
  $('title').textContent = space.title;
  document.title = 'Replay: ' + space.title + ' · amphi';
  if (space.state !== 'ended') {
    say('The replay is here once the space has ended.');
    return;
  }
  const src = spaceURL + '/recording.opus';
  $('download').href = src;
  // A browser that plays no Ogg Opus but plays HLS itself (Safari on
  // older iOS) gets the same recording as HLS VOD.
  const noOgg = audio.canPlayType('audio/ogg; codecs=opus') === '';
  audio.src = noOgg && audio.canPlayType('application/vnd.apple.mpegurl') ? space.replay_hls_url : src;
  audio.addEventListener('loadedmetadata', () => {
    $('seek').max = String(audio.duration);
    $('duration').textContent = clock(audio.duration);
    const t = Number(new URLSearchParams(location.search).get('t'));
    if (t > 0 && t < audio.duration) audio.currentTime = t;
    $('player').hidden = false;
    showTime();
    loadTimeline(audio.duration);
  });
  audio.addEventListener('error', () => say('This space has no recording to play.', true));
}

audio.addEventListener('timeupdate', showTime);
audio.addEventListener('play', () => { $('play').textContent = 'Pause'; });
audio.addEventListener('pause', () => { $('play').textContent = 'Play'; });
audio.addEventListener('ended', () => { $('play').textContent = 'Play'; });

$('play').addEventListener('click', () => {
  if (audio.paused) {
    audio.play().catch((e) => say('The browser did not play: ' + e.message, true));
  } else {
    audio.pause();
  }
});

$('seek').addEventListener('input', (e) => {
  audio.currentTime = Number(e.target.value);
  showTime();
});

for (const b of document.querySelectorAll('[data-rate]')) {
  b.addEventListener('click', () => {
    audio.playbackRate = Number(b.dataset.rate);
    for (const o of document.querySelectorAll('[data-rate]')) o.setAttribute('aria-pressed', String(o === b));
  });
}

load();
