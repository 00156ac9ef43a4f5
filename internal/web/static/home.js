// The home page: live and upcoming spaces from GET /spaces, refreshed
// every 15 s so a space that goes on air appears without a reload.
import {listenersText} from './stage.js';

const refreshMs = 15000;

function item(sp) {
  const li = document.createElement('li');
  const a = document.createElement('a');
  a.href = '/s/' + encodeURIComponent(sp.id);
  const title = document.createElement('span');
  title.className = 'title';
  title.textContent = sp.title;
  const meta = document.createElement('span');
  meta.className = 'meta';
  if (sp.state === 'live') {
    const since = sp.started_at ? new Date(sp.started_at) : null;
    meta.textContent = 'On air' + (since ? ' since ' + since.toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'}) : '');
  } else {
    const at = sp.scheduled_at ? new Date(sp.scheduled_at) : null;
    meta.textContent = at ? 'Starts ' + at.toLocaleString([], {dateStyle: 'medium', timeStyle: 'short'}) : 'Scheduled';
  }
  // Live spaces say how many listen when the list gives the count.
  if (sp.state === 'live' && Number.isFinite(sp.listeners)) meta.textContent += ' · ' + listenersText(sp.listeners);
  a.append(title, meta);
  if (sp.description) {
    // Clipped to two lines by room.css; the space's page has all of it.
    const desc = document.createElement('span');
    desc.className = 'desc';
    desc.textContent = sp.description;
    a.append(desc);
  }
  li.append(a);
  return li;
}

function fill(listId, emptyId, spaces) {
  document.getElementById(listId).replaceChildren(...spaces.map(item));
  document.getElementById(emptyId).hidden = spaces.length > 0;
}

async function load() {
  const status = document.getElementById('home-status');
  try {
    const r = await fetch('/spaces?state=live,scheduled', {headers: {Accept: 'application/json'}});
    if (!r.ok) throw new Error('the server answered ' + r.status);
    const {spaces} = await r.json();
    fill('live-list', 'live-empty', spaces.filter(s => s.state === 'live'));
    // Soonest first; the API lists newest first.
    const upcoming = spaces.filter(s => s.state === 'scheduled')
      .sort((a, b) => (a.scheduled_at || '').localeCompare(b.scheduled_at || ''));
    fill('upcoming-list', 'upcoming-empty', upcoming);
    status.textContent = '';
    status.classList.remove('error');
  } catch (e) {
    status.textContent = 'Could not load the spaces: ' + e.message + '. Retrying…';
    status.classList.add('error');
  }
}

load();
// A hidden tab skips its rounds and catches up when it shows again.
setInterval(() => { if (!document.hidden) load(); }, refreshMs);
document.addEventListener('visibilitychange', () => { if (!document.hidden) load(); });
