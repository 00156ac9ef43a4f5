// A space's replay: its recording in an <audio> element, with a seek bar
// and speeds of 1x, 1.5x and 2x. The server answers Range requests on the
// recording, so the browser seeks by asking for the bytes it needs (its
// Ogg demuxer bisects by granule position): seeking is exact and does not
// download what it skips. ?t=90 starts at 90 s, as a shared link asks.

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
  audio.src = src;
  audio.addEventListener('loadedmetadata', () => {
    $('seek').max = String(audio.duration);
    $('duration').textContent = clock(audio.duration);
    const t = Number(new URLSearchParams(location.search).get('t'));
    if (t > 0 && t < audio.duration) audio.currentTime = t;
    $('player').hidden = false;
    showTime();
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
